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
	"runtime"
	"unsafe"

	"ingot"
	"ingot/internal/capi"
	"ingot/sample"
)

// PromptCache holds the keys and values of every layer of one model for a sequence of token ids
// (ingot_prompt_cache): prefill a shared prompt prefix once, then continue it (Generate) or
// classify prompts that start with it (Classify, ClassifyTexts) without computing the prefix
// again (Score too). It is tied to the model it was made for, and becomes unusable (an
// ingot.ErrInvalidArgument error) when that model's weights change (an adapter applied,
// removed or fused) until it is cleared. One call at a time per cache. The package ingot/cache
// has the same type under the name go-mlx users look for.
type PromptCache struct {
	h C.ingot_prompt_cache
	m *Model
}

func wrapCache(h C.ingot_prompt_cache, m *Model) *PromptCache {
	c := &PromptCache{h: h, m: m}
	runtime.SetFinalizer(c, func(c *PromptCache) {
		if c.h != nil {
			capi.NoteLeak()
			C.ingot_prompt_cache_free(c.h)
		}
	})
	return c
}

// NewPromptCache makes an empty prompt cache for the model.
func (m *Model) NewPromptCache() (*PromptCache, error) {
	var h C.ingot_prompt_cache
	if err := call(func() C.int { return C.ingot_prompt_cache_new(m.handle(), &h) }); err != nil {
		return nil, err
	}
	return wrapCache(h, m), nil
}

// LoadPromptCache reads a cache written by PromptCache.Save for this model (ingot.ErrIO when
// the file cannot be read, ingot.ErrFormat when it does not fit the model).
func (m *Model) LoadPromptCache(path string) (*PromptCache, error) {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	var h C.ingot_prompt_cache
	if err := call(func() C.int { return C.ingot_prompt_cache_load(m.handle(), cp, &h) }); err != nil {
		return nil, err
	}
	return wrapCache(h, m), nil
}

// Close releases the cache's keys and values now (twice, or on nil, is fine).
func (c *PromptCache) Close() {
	if c == nil || c.h == nil {
		return
	}
	C.ingot_prompt_cache_free(c.h)
	c.h = nil
	runtime.SetFinalizer(c, nil)
}

func (c *PromptCache) handle() C.ingot_prompt_cache {
	if c == nil {
		return nil
	}
	return c.h
}

func (c *PromptCache) model() C.ingot_model {
	if c == nil {
		return nil
	}
	return c.m.handle()
}

// Model is the model the cache was made for.
func (c *PromptCache) Model() *Model {
	if c == nil {
		return nil
	}
	return c.m
}

// Copy returns an independent copy (cheap: buffers are shared until one of them is extended).
func (c *PromptCache) Copy() (*PromptCache, error) {
	var h C.ingot_prompt_cache
	if err := call(func() C.int { return C.ingot_prompt_cache_copy(c.handle(), &h) }); err != nil {
		return nil, err
	}
	return wrapCache(h, c.m), nil
}

// Prefill appends ids to the cache, computing their keys and values now. On error the cache
// is left as it was.
func (c *PromptCache) Prefill(ids []int32) error {
	return call(func() C.int {
		return C.ingot_prompt_cache_prefill(c.model(), c.handle(), cIDs(ids), C.size_t(len(ids)))
	})
}

// PrefillTemplate fills an empty cache with the ids that every filling of template
// ("{text}" once) starts with: the template's text before "{text}" with the tokenizer's
// special tokens, less its last token (which could merge with the text).
func (c *PromptCache) PrefillTemplate(template string) error {
	ct := C.CString(template)
	defer C.free(unsafe.Pointer(ct))
	return call(func() C.int { return C.ingot_prompt_cache_prefill_template(c.model(), c.handle(), ct) })
}

// Len is the number of token ids the cache holds.
func (c *PromptCache) Len() (int64, error) {
	var n C.int64_t
	err := call(func() C.int { return C.ingot_prompt_cache_length(c.handle(), &n) })
	return int64(n), err
}

// Tokens are the ids the cache holds.
func (c *PromptCache) Tokens() ([]int32, error) {
	var p *C.int32_t
	var n C.size_t
	if err := call(func() C.int { return C.ingot_prompt_cache_tokens(c.handle(), &p, &n) }); err != nil {
		return nil, err
	}
	return capi.TakeIDs(unsafe.Pointer(p), int(n)), nil
}

// Bytes is the size of the keys and values held.
func (c *PromptCache) Bytes() (int64, error) {
	var n C.int64_t
	err := call(func() C.int { return C.ingot_prompt_cache_nbytes(c.handle(), &n) })
	return int64(n), err
}

// Trim rewinds the cache to its first n ids.
func (c *PromptCache) Trim(n int64) error {
	return call(func() C.int { return C.ingot_prompt_cache_trim(c.handle(), C.int64_t(n)) })
}

// Clear empties the cache (it can then be filled again, also after the model's weights changed).
func (c *PromptCache) Clear() error {
	return call(func() C.int { return C.ingot_prompt_cache_clear(c.handle()) })
}

// Save writes the cache to a safetensors file that LoadPromptCache reads on any device.
func (c *PromptCache) Save(path string) error {
	cp := C.CString(path)
	defer C.free(unsafe.Pointer(cp))
	return call(func() C.int { return C.ingot_prompt_cache_save(c.handle(), cp) })
}

// Generate is Model.Generate through the cache: the longest common prefix of prompt and the
// cache's ids is reused, and afterwards the cache holds the prompt and the generated ids (all
// but the last). To continue one prefix several ways, pass the prefix plus each continuation's
// own ids (the cache rewinds to the prefix), or generate from Copy()s.
func (c *PromptCache) Generate(ctx context.Context, prompt []int32, opts sample.Options) (*Generation, error) {
	return generate(ctx, opts, func(co *C.ingot_generate_options, textFn C.ingot_text_fn,
		ctxp unsafe.Pointer, g *C.ingot_generation) C.int {
		return C.ingot_generate_cached(c.model(), c.handle(), cIDs(prompt), C.size_t(len(prompt)), co,
			(C.ingot_token_fn)(C.ingot_go_model_token_tramp), textFn, ctxp, g)
	})
}

// Score is Model.Score of full prompts that all start with the cache's ids (a prompt may equal
// them, as when many continuations follow one shared prompt); the cached prefix is not computed
// again and the cache is unchanged. batchSize 0: 16.
func (c *PromptCache) Score(prompts, continuations [][]int32, batchSize int) ([]float64, [][]float64, error) {
	if len(prompts) != len(continuations) {
		return nil, nil, &ingot.Error{Code: ingot.StatusInvalidArgument, Message: "[ingot] PromptCache.Score: prompts and continuations differ in count"}
	}
	pp, pl, f1 := idLists(prompts)
	defer f1()
	cp, cl, f2 := idLists(continuations)
	defer f2()
	total := 0
	for _, x := range continuations {
		total += len(x)
	}
	sums := make([]float64, len(prompts)+1)
	toks := make([]float64, total+1)
	err := call(func() C.int {
		return C.ingot_score_cached(c.model(), c.handle(), pp, pl, cp, cl, C.size_t(len(prompts)),
			C.int64_t(batchSize), (*C.double)(unsafe.Pointer(&sums[0])), (*C.double)(unsafe.Pointer(&toks[0])))
	})
	if err != nil {
		return nil, nil, err
	}
	per := make([][]float64, len(prompts))
	at := 0
	for i, x := range continuations {
		per[i] = toks[at : at+len(x) : at+len(x)]
		at += len(x)
	}
	return sums[:len(prompts)], per, nil
}

// Classify is Model.Classify of full prompts that all start with the cache's ids (a prompt may
// equal them); the cached prefix is not computed again and the cache is unchanged.
// batchSize 0: 64.
func (c *PromptCache) Classify(prompts, labels [][]int32, batchSize int) ([][]float64, error) {
	pp, pl, f1 := idLists(prompts)
	defer f1()
	lp, ll, f2 := idLists(labels)
	defer f2()
	flat := make([]float64, len(prompts)*len(labels)+1)
	err := call(func() C.int {
		return C.ingot_classify_cached(c.model(), c.handle(), pp, pl, C.size_t(len(prompts)), lp, ll,
			C.size_t(len(labels)), C.int64_t(batchSize), (*C.double)(unsafe.Pointer(&flat[0])))
	})
	if err != nil {
		return nil, err
	}
	return split(flat, len(prompts), len(labels)), nil
}

// ClassifyTexts is Model.ClassifyTexts through the cache (see PrefillTemplate): every filled,
// tokenized template must start with the cache's ids. The cache is unchanged.
func (c *PromptCache) ClassifyTexts(template string, labels, texts []string, batchSize int) ([][]float64, error) {
	ct := C.CString(template)
	defer C.free(unsafe.Pointer(ct))
	cl, f1 := cStrings(labels)
	defer f1()
	cx, f2 := cStrings(texts)
	defer f2()
	flat := make([]float64, len(texts)*len(labels)+1)
	err := call(func() C.int {
		return C.ingot_classify_texts_cached(c.model(), c.handle(), ct, cl, C.size_t(len(labels)), cx,
			C.size_t(len(texts)), C.int64_t(batchSize), (*C.double)(unsafe.Pointer(&flat[0])))
	})
	if err != nil {
		return nil, err
	}
	return split(flat, len(texts), len(labels)), nil
}
