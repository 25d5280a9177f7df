// Package sample holds the options of generation: how the next token is sampled (temperature,
// top-k, top-p, min-p, repetition penalty, seed), when generation stops, and the streaming
// callbacks. model.Model.Generate and GenerateBatch take an Options.
package sample

/*
#cgo LDFLAGS: -lingot
#include "ingot/ingot.h"
*/
import "C"

// Options configure generation; DefaultOptions gives the defaults.
type Options struct {
	MaxTokens         int64
	Temperature       float32 // 0: greedy
	TopK              int
	TopP              float32
	MinP              float32
	RepetitionPenalty float32
	Seed              uint64
	StopAtEOS         bool
	SkipSpecialTokens bool
	StopIDs           []int32
	StopStrings       []string
	PrefillChunk      int64
	// OnToken sees each sampled id (row = prompt index); returning false stops that row.
	OnToken func(row int, id int32) bool
	// OnText receives streamed text (whole UTF-8 characters).
	OnText func(piece string)
}

// DefaultOptions are the C ABI's defaults (ingot_generate_options_default): 256 tokens,
// greedy, stop at EOS.
func DefaultOptions() Options {
	d := C.ingot_generate_options_default()
	return Options{
		MaxTokens: int64(d.max_tokens), Temperature: float32(d.temperature), TopK: int(d.top_k),
		TopP: float32(d.top_p), MinP: float32(d.min_p), RepetitionPenalty: float32(d.repetition_penalty),
		Seed: uint64(d.seed), StopAtEOS: d.stop_at_eos != 0, SkipSpecialTokens: d.skip_special_tokens != 0,
		PrefillChunk: int64(d.prefill_chunk),
	}
}
