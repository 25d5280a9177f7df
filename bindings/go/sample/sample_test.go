package sample

import "testing"

// DefaultOptions carries the C ABI's defaults (ingot_generate_options_default in
// src/capi/capi_llm.cpp): 256 tokens, greedy, top-p 1, no repetition penalty, stop at EOS, skip
// special tokens, prefill chunks of 512.
func TestDefaultOptions(t *testing.T) {
	o := DefaultOptions()
	if o.MaxTokens != 256 || o.Temperature != 0 || o.TopK != 0 || o.TopP != 1 || o.MinP != 0 ||
		o.RepetitionPenalty != 1 || o.Seed != 0 || !o.StopAtEOS || !o.SkipSpecialTokens ||
		o.PrefillChunk != 512 || o.StopIDs != nil || o.StopStrings != nil || o.OnToken != nil || o.OnText != nil {
		t.Fatalf("defaults %+v", o)
	}
}
