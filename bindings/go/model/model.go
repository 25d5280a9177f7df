// Package model is ingot's LLM level: load and close a Hugging Face checkpoint, run it
// (forward, generate, batch generate, score, classify, embed, with generation metrics), and the
// LoRA operations bound to a model (new/load/apply/remove/fuse adapters, train, save, Fuse). It
// imports the root package ingot (arrays, adapters, errors) and ingot/sample (generation options)
// and ingot/tokenizer (a model's tokenizer); none of those import it.
package model

/*
#include <stdlib.h>
#include "ingot/ingot.h"
int ingot_go_model_token_tramp(void* ctx, int row, int32_t id);
void ingot_go_model_text_tramp(void* ctx, const char* piece, size_t len);
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"unsafe"

	"ingot"
	"ingot/internal/capi"
	"ingot/sample"
	"ingot/tokenizer"
)

func call(f func() C.int) error { return capi.Call(f) }

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func cIDs(ids []int32) *C.int32_t {
	if len(ids) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&ids[0]))
}

// box puts a cgo.Handle to v in C memory (the ctx of a C callback); free releases both.
func box(v any) (unsafe.Pointer, func()) {
	h := cgo.NewHandle(v)
	p := C.malloc(C.size_t(unsafe.Sizeof(C.uintptr_t(0))))
	*(*C.uintptr_t)(p) = C.uintptr_t(h)
	return p, func() {
		C.free(p)
		h.Delete()
	}
}

// Model is a loaded checkpoint (with its tokenizer when the directory has one).
type Model struct {
	h C.ingot_model
}

// Options say where and in which dtype a model is loaded ("" = default), and which LoRA
// adapter directory is applied (unfused) on load.
type Options struct {
	Device  string // "cpu", "cuda:0"
	Dtype   string // "bfloat16", "float32"
	Adapter string // PEFT or mlx-lm adapter directory
}

// Load loads a Hugging Face checkpoint directory.
func Load(dir string, opts Options) (*Model, error) {
	cd := C.CString(dir)
	defer C.free(unsafe.Pointer(cd))
	var o C.ingot_model_options
	if opts.Device != "" {
		o.device = C.CString(opts.Device)
		defer C.free(unsafe.Pointer(o.device))
	}
	if opts.Dtype != "" {
		o.dtype = C.CString(opts.Dtype)
		defer C.free(unsafe.Pointer(o.dtype))
	}
	if opts.Adapter != "" {
		o.adapter = C.CString(opts.Adapter)
		defer C.free(unsafe.Pointer(o.adapter))
	}
	var h C.ingot_model
	if err := call(func() C.int { return C.ingot_model_load(cd, &o, &h) }); err != nil {
		return nil, err
	}
	m := &Model{h: h}
	runtime.SetFinalizer(m, func(m *Model) {
		if m.h != nil {
			capi.NoteLeak()
			C.ingot_model_free(m.h)
		}
	})
	return m, nil
}

// Close releases the model's weights now.
func (m *Model) Close() {
	if m == nil || m.h == nil {
		return
	}
	C.ingot_model_free(m.h)
	m.h = nil
	runtime.SetFinalizer(m, nil)
}

func (m *Model) handle() C.ingot_model {
	if m == nil {
		return nil
	}
	return m.h
}

// Tokenizer is the model's tokenizer (a new handle to Close).
func (m *Model) Tokenizer() (*tokenizer.Tokenizer, error) {
	var h C.ingot_tokenizer
	if err := call(func() C.int { return C.ingot_model_tokenizer(m.handle(), &h) }); err != nil {
		return nil, err
	}
	return capi.WrapTokenizer(unsafe.Pointer(h)).(*tokenizer.Tokenizer), nil
}

// VocabSize is the size of the output vocabulary.
func (m *Model) VocabSize() (int64, error) {
	var n C.int64_t
	err := call(func() C.int { return C.ingot_model_vocab_size(m.handle(), &n) })
	return int64(n), err
}

// HiddenSize is the width of the hidden states (Embed's output size).
func (m *Model) HiddenSize() (int64, error) {
	var n C.int64_t
	err := call(func() C.int { return C.ingot_model_hidden_size(m.handle(), &n) })
	return int64(n), err
}

// NumLayers is the number of transformer layers.
func (m *Model) NumLayers() (int, error) {
	var n C.int
	err := call(func() C.int { return C.ingot_model_num_layers(m.handle(), &n) })
	return int(n), err
}

// Dtype is the dtype the weights were loaded in.
func (m *Model) Dtype() (ingot.Dtype, error) {
	d := C.int(-1)
	err := call(func() C.int { return C.ingot_model_dtype(m.handle(), &d) })
	return ingot.Dtype(d), err
}

// Device is where the weights live.
func (m *Model) Device() (ingot.Device, error) {
	var d C.ingot_device
	err := call(func() C.int { return C.ingot_model_device(m.handle(), &d) })
	return ingot.Device{Type: int(d._type), Index: int(d.index)}, err
}

// Architecture is "llama", "qwen3", "gemma3".
func (m *Model) Architecture() (string, error) {
	var p *C.char
	err := call(func() C.int { return C.ingot_model_architecture(m.handle(), &p) })
	if err != nil {
		return "", err
	}
	return C.GoString(p), nil
}

// Forward maps ids [B, L] to logits [B, L, V] (float32, lazy).
func (m *Model) Forward(ids *ingot.Array) (*ingot.Array, error) {
	x := C.ingot_array(capi.ArrayHandle(ids))
	var out C.ingot_array
	if err := call(func() C.int { return C.ingot_model_forward(m.handle(), x, &out) }); err != nil {
		return nil, err
	}
	return capi.WrapArray(unsafe.Pointer(out)).(*ingot.Array), nil
}

// FinishReason says why generation stopped.
type FinishReason int

// Finish reasons.
const (
	FinishLength FinishReason = iota
	FinishEOS
	FinishStop
	FinishCancelled
)

// Metrics are timing and size figures of a generation.
type Metrics struct {
	PromptTokens, GeneratedTokens                   int64
	PrefillSeconds, DecodeSeconds, TimeToFirstToken float64
	PrefillTokensPerSecond, DecodeTokensPerSecond   float64
	PeakMemoryBytes                                 int64
}

func metricsOf(m C.ingot_generation_metrics) Metrics {
	return Metrics{int64(m.prompt_tokens), int64(m.generated_tokens), float64(m.prefill_seconds),
		float64(m.decode_seconds), float64(m.time_to_first_token), float64(m.prefill_tokens_per_second),
		float64(m.decode_tokens_per_second), int64(m.peak_memory_bytes)}
}

// Generation is the result of Generate.
type Generation struct {
	Tokens  []int32
	Text    string
	Finish  FinishReason
	Metrics Metrics
}

// callbacks of one generate call, reached from C through a cgo.Handle.
type genCallbacks struct {
	ctx     context.Context
	onToken func(row int, id int32) bool
	onText  func(string)
	panic   error // a panic of onToken/onText, returned by the call (panics must not cross C)
}

func (cb *genCallbacks) recoverPanic() {
	if r := recover(); r != nil && cb.panic == nil {
		cb.panic = &ingot.Error{Code: ingot.StatusCallback, Message: fmt.Sprintf("[go] generation callback panicked: %v", r)}
	}
}

//export goModelTokenCall
func goModelTokenCall(h C.uintptr_t, row C.int, id C.int32_t) (rc C.int) {
	cb := cgo.Handle(h).Value().(*genCallbacks)
	rc = 1 // stop if onToken panics
	defer cb.recoverPanic()
	if cb.panic != nil || (cb.ctx != nil && cb.ctx.Err() != nil) {
		return 1
	}
	if cb.onToken != nil && !cb.onToken(int(row), int32(id)) {
		return 1
	}
	return 0
}

//export goModelTextCall
func goModelTextCall(h C.uintptr_t, piece *C.char, n C.size_t) {
	cb := cgo.Handle(h).Value().(*genCallbacks)
	defer cb.recoverPanic()
	if cb.onText != nil && cb.panic == nil {
		cb.onText(C.GoStringN(piece, C.int(n)))
	}
}

// cOptions converts options; free() releases the C strings.
func cOptions(o sample.Options) (C.ingot_generate_options, func()) {
	c := C.ingot_generate_options_default()
	c.max_tokens = C.int64_t(o.MaxTokens)
	c.temperature = C.float(o.Temperature)
	c.top_k = C.int(o.TopK)
	c.top_p = C.float(o.TopP)
	c.min_p = C.float(o.MinP)
	c.repetition_penalty = C.float(o.RepetitionPenalty)
	c.seed = C.uint64_t(o.Seed)
	c.stop_at_eos = cBool(o.StopAtEOS)
	c.skip_special_tokens = cBool(o.SkipSpecialTokens)
	c.prefill_chunk = C.int64_t(o.PrefillChunk)
	var allocs []unsafe.Pointer
	if len(o.StopIDs) > 0 {
		p := C.malloc(C.size_t(4 * len(o.StopIDs)))
		copy(unsafe.Slice((*int32)(p), len(o.StopIDs)), o.StopIDs)
		c.stop_ids = (*C.int32_t)(p)
		c.n_stop_ids = C.size_t(len(o.StopIDs))
		allocs = append(allocs, p)
	}
	if len(o.StopStrings) > 0 {
		arr := (**C.char)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)) * uintptr(len(o.StopStrings)))))
		s := unsafe.Slice(arr, len(o.StopStrings))
		for i, x := range o.StopStrings {
			s[i] = C.CString(x)
			allocs = append(allocs, unsafe.Pointer(s[i]))
		}
		c.stop_strings = arr
		c.n_stop_strings = C.size_t(len(o.StopStrings))
		allocs = append(allocs, unsafe.Pointer(arr))
	}
	return c, func() {
		for _, p := range allocs {
			C.free(p)
		}
	}
}

// Generate continues prompt ids. Cancelling ctx stops generation at the next token
// (FinishCancelled) and returns ctx's error with the partial result.
func (m *Model) Generate(ctx context.Context, prompt []int32, opts sample.Options) (*Generation, error) {
	return generate(ctx, opts, func(co *C.ingot_generate_options, textFn C.ingot_text_fn,
		ctxp unsafe.Pointer, g *C.ingot_generation) C.int {
		return C.ingot_generate(m.handle(), cIDs(prompt), C.size_t(len(prompt)), co,
			(C.ingot_token_fn)(C.ingot_go_model_token_tramp), textFn, ctxp, g)
	})
}

// generate runs one single-sequence generation call: run gets the C options, the text
// callback (nil without opts.OnText), the boxed callbacks and the result to fill.
func generate(ctx context.Context, opts sample.Options,
	run func(co *C.ingot_generate_options, textFn C.ingot_text_fn, ctxp unsafe.Pointer,
		g *C.ingot_generation) C.int) (*Generation, error) {
	if ctx != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	co, free := cOptions(opts)
	defer free()
	cb := &genCallbacks{ctx: ctx, onToken: opts.OnToken, onText: opts.OnText}
	ctxp, freeBox := box(cb)
	defer freeBox()
	var textFn C.ingot_text_fn
	if opts.OnText != nil {
		textFn = (C.ingot_text_fn)(C.ingot_go_model_text_tramp)
	}
	var g C.ingot_generation
	if err := call(func() C.int { return run(&co, textFn, ctxp, &g) }); err != nil {
		return nil, err
	}
	defer C.ingot_generation_free(&g)
	out := &Generation{Text: C.GoString(g.text), Finish: FinishReason(g.finish_reason), Metrics: metricsOf(g.metrics)}
	out.Tokens = make([]int32, int(g.n_tokens))
	if g.n_tokens > 0 {
		copy(out.Tokens, unsafe.Slice((*int32)(unsafe.Pointer(g.tokens)), int(g.n_tokens)))
	}
	if cb.panic != nil {
		return out, cb.panic
	}
	if ctx != nil && ctx.Err() != nil {
		return out, ctx.Err()
	}
	return out, nil
}

// idLists lays id lists out in C memory (pointer array + lengths); free() releases it.
func idLists(lists [][]int32) (**C.int32_t, *C.size_t, func()) {
	if len(lists) == 0 {
		return nil, nil, func() {}
	}
	n := len(lists)
	ptrs := (**C.int32_t)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)) * uintptr(n))))
	lens := (*C.size_t)(C.malloc(C.size_t(unsafe.Sizeof(C.size_t(0)) * uintptr(n))))
	ps, ls := unsafe.Slice(ptrs, n), unsafe.Slice(lens, n)
	allocs := []unsafe.Pointer{unsafe.Pointer(ptrs), unsafe.Pointer(lens)}
	for i, l := range lists {
		ls[i] = C.size_t(len(l))
		ps[i] = nil
		if len(l) > 0 {
			p := C.malloc(C.size_t(4 * len(l)))
			copy(unsafe.Slice((*int32)(p), len(l)), l)
			ps[i] = (*C.int32_t)(p)
			allocs = append(allocs, p)
		}
	}
	return ptrs, lens, func() {
		for _, p := range allocs {
			C.free(p)
		}
	}
}

// GenerateBatch continues several prompts in one left-padded batch (token ids only).
func (m *Model) GenerateBatch(ctx context.Context, prompts [][]int32, opts sample.Options) ([][]int32, []FinishReason, Metrics, error) {
	co, free := cOptions(opts)
	defer free()
	ptrs, lens, freeIDs := idLists(prompts)
	defer freeIDs()
	if ctx != nil && ctx.Err() != nil {
		return nil, nil, Metrics{}, ctx.Err()
	}
	cb := &genCallbacks{ctx: ctx, onToken: opts.OnToken}
	ctxp, freeBox := box(cb)
	defer freeBox()
	var g C.ingot_batch_generation
	err := call(func() C.int {
		return C.ingot_generate_batch(m.handle(), ptrs, lens, C.size_t(len(prompts)), &co,
			(C.ingot_token_fn)(C.ingot_go_model_token_tramp), ctxp, &g)
	})
	if err != nil {
		return nil, nil, Metrics{}, err
	}
	defer C.ingot_batch_generation_free(&g)
	n := int(g.n_rows)
	offs := unsafe.Slice(g.offsets, n+1)
	fin := unsafe.Slice(g.finish_reasons, n)
	toks := unsafe.Slice((*int32)(unsafe.Pointer(g.tokens)), int(offs[n]))
	rows := make([][]int32, n)
	reasons := make([]FinishReason, n)
	for i := 0; i < n; i++ {
		rows[i] = append([]int32(nil), toks[offs[i]:offs[i+1]]...)
		reasons[i] = FinishReason(fin[i])
	}
	if cb.panic != nil {
		return rows, reasons, metricsOf(g.metrics), cb.panic
	}
	if ctx != nil && ctx.Err() != nil {
		return rows, reasons, metricsOf(g.metrics), ctx.Err()
	}
	return rows, reasons, metricsOf(g.metrics), nil
}

// Score returns the summed log-probability of each continuation after its prompt, and the
// per-token log-probabilities. batchSize 0: 16.
func (m *Model) Score(prompts, continuations [][]int32, batchSize int) ([]float64, [][]float64, error) {
	if len(prompts) != len(continuations) {
		return nil, nil, &ingot.Error{Code: ingot.StatusInvalidArgument, Message: "[ingot] Score: prompts and continuations differ in count"}
	}
	pp, pl, f1 := idLists(prompts)
	defer f1()
	cp, cl, f2 := idLists(continuations)
	defer f2()
	total := 0
	for _, c := range continuations {
		total += len(c)
	}
	sums := make([]float64, len(prompts)+1)
	toks := make([]float64, total+1)
	err := call(func() C.int {
		return C.ingot_score(m.handle(), pp, pl, cp, cl, C.size_t(len(prompts)), C.int64_t(batchSize),
			(*C.double)(unsafe.Pointer(&sums[0])), (*C.double)(unsafe.Pointer(&toks[0])))
	})
	if err != nil {
		return nil, nil, err
	}
	per := make([][]float64, len(prompts))
	at := 0
	for i, c := range continuations {
		per[i] = toks[at : at+len(c)]
		at += len(c)
	}
	return sums[:len(prompts)], per, nil
}

// Classify returns, per prompt, the probability of each label (token-id prompts and labels).
func (m *Model) Classify(prompts, labels [][]int32, batchSize int) ([][]float64, error) {
	pp, pl, f1 := idLists(prompts)
	defer f1()
	lp, ll, f2 := idLists(labels)
	defer f2()
	flat := make([]float64, len(prompts)*len(labels)+1)
	err := call(func() C.int {
		return C.ingot_classify(m.handle(), pp, pl, C.size_t(len(prompts)), lp, ll, C.size_t(len(labels)),
			C.int64_t(batchSize), (*C.double)(unsafe.Pointer(&flat[0])))
	})
	if err != nil {
		return nil, err
	}
	return split(flat, len(prompts), len(labels)), nil
}

func split(flat []float64, n, k int) [][]float64 {
	out := make([][]float64, n)
	for i := range out {
		out[i] = flat[i*k : (i+1)*k : (i+1)*k]
	}
	return out
}

func cStrings(v []string) (**C.char, func()) {
	if len(v) == 0 {
		return nil, func() {}
	}
	arr := (**C.char)(C.malloc(C.size_t(unsafe.Sizeof(uintptr(0)) * uintptr(len(v)))))
	s := unsafe.Slice(arr, len(v))
	for i, x := range v {
		s[i] = C.CString(x)
	}
	return arr, func() {
		for _, p := range s {
			C.free(unsafe.Pointer(p))
		}
		C.free(unsafe.Pointer(arr))
	}
}

// ClassifyTexts fills template (containing "{text}" once) with each text and returns the
// probability of each label string continuing it. batchSize 0: sized automatically (64 texts
// on the CPU; on a GPU from the text lengths and the free device memory).
func (m *Model) ClassifyTexts(template string, labels, texts []string, batchSize int) ([][]float64, error) {
	ct := C.CString(template)
	defer C.free(unsafe.Pointer(ct))
	cl, f1 := cStrings(labels)
	defer f1()
	cx, f2 := cStrings(texts)
	defer f2()
	flat := make([]float64, len(texts)*len(labels)+1)
	err := call(func() C.int {
		return C.ingot_classify_texts(m.handle(), ct, cl, C.size_t(len(labels)), cx, C.size_t(len(texts)),
			C.int64_t(batchSize), (*C.double)(unsafe.Pointer(&flat[0])))
	})
	if err != nil {
		return nil, err
	}
	return split(flat, len(texts), len(labels)), nil
}

// Pooling of Embed.
type Pooling int

// Poolings.
const (
	PoolLast Pooling = iota
	PoolMean
)

// Embed returns the pooled final hidden states (float32) of each prompt.
func (m *Model) Embed(prompts [][]int32, pooling Pooling, batchSize int) ([][]float32, error) {
	e, err := m.HiddenSize()
	if err != nil {
		return nil, err
	}
	pp, pl, f := idLists(prompts)
	defer f()
	flat := make([]float32, len(prompts)*int(e)+1)
	err = call(func() C.int {
		return C.ingot_embed(m.handle(), pp, pl, C.size_t(len(prompts)), C.int(pooling), C.int64_t(batchSize),
			(*C.float)(unsafe.Pointer(&flat[0])))
	})
	if err != nil {
		return nil, err
	}
	out := make([][]float32, len(prompts))
	for i := range out {
		out[i] = flat[i*int(e) : (i+1)*int(e) : (i+1)*int(e)]
	}
	return out, nil
}
