// Package tokenizer is ingot's tokenizer handle: a Hugging Face tokenizer.json pipeline with its
// chat template (encode, decode, streaming decode, chat template). A model's own tokenizer comes
// from model.Model.Tokenizer.
package tokenizer

/*
#include <stdlib.h>
#include "ingot/ingot.h"
*/
import "C"

import (
	"runtime"
	"unsafe"

	"ingot/internal/capi"
)

func call(f func() C.int) error { return capi.Call(f) }

func cBool(b bool) C.int {
	if b {
		return 1
	}
	return 0
}

func init() {
	capi.WrapTokenizer = func(h unsafe.Pointer) any { return wrap(C.ingot_tokenizer(h)) }
}

// Tokenizer is a Hugging Face tokenizer.json pipeline with its chat template.
type Tokenizer struct {
	h C.ingot_tokenizer
}

func wrap(h C.ingot_tokenizer) *Tokenizer {
	t := &Tokenizer{h: h}
	runtime.SetFinalizer(t, func(t *Tokenizer) {
		if t.h != nil {
			capi.NoteLeak()
			C.ingot_tokenizer_free(t.h)
		}
	})
	return t
}

// Load loads dir/tokenizer.json (+ tokenizer_config.json, generation_config.json).
func Load(dir string) (*Tokenizer, error) {
	cd := C.CString(dir)
	defer C.free(unsafe.Pointer(cd))
	var h C.ingot_tokenizer
	if err := call(func() C.int { return C.ingot_tokenizer_load(cd, &h) }); err != nil {
		return nil, err
	}
	return wrap(h), nil
}

// Close releases the tokenizer.
func (t *Tokenizer) Close() {
	if t == nil || t.h == nil {
		return
	}
	C.ingot_tokenizer_free(t.h)
	t.h = nil
	runtime.SetFinalizer(t, nil)
}

func (t *Tokenizer) handle() C.ingot_tokenizer {
	if t == nil {
		return nil
	}
	return t.h
}

func takeIDs(p *C.int32_t, n C.size_t) []int32 { return capi.TakeIDs(unsafe.Pointer(p), int(n)) }

func takeString(p *C.char) string { return capi.TakeString(unsafe.Pointer(p)) }

func cIDs(ids []int32) *C.int32_t {
	if len(ids) == 0 {
		return nil
	}
	return (*C.int32_t)(unsafe.Pointer(&ids[0]))
}

// Encode tokenizes UTF-8 text (with BOS etc. when addSpecial).
func (t *Tokenizer) Encode(text string, addSpecial bool) ([]int32, error) {
	ct := C.CString(text)
	defer C.free(unsafe.Pointer(ct))
	var p *C.int32_t
	var n C.size_t
	if err := call(func() C.int { return C.ingot_tokenizer_encode(t.handle(), ct, cBool(addSpecial), &p, &n) }); err != nil {
		return nil, err
	}
	return takeIDs(p, n), nil
}

// Decode turns ids into text.
func (t *Tokenizer) Decode(ids []int32, skipSpecial bool) (string, error) {
	var p *C.char
	err := call(func() C.int {
		return C.ingot_tokenizer_decode(t.handle(), cIDs(ids), C.size_t(len(ids)), cBool(skipSpecial), &p)
	})
	if err != nil {
		return "", err
	}
	return takeString(p), nil
}

// VocabSize is one past the largest id.
func (t *Tokenizer) VocabSize() (int, error) {
	var n C.int32_t
	err := call(func() C.int { return C.ingot_tokenizer_vocab_size(t.handle(), &n) })
	return int(n), err
}

// TokenToID looks a token string up.
func (t *Tokenizer) TokenToID(token string) (int32, error) {
	ct := C.CString(token)
	defer C.free(unsafe.Pointer(ct))
	var id C.int32_t
	err := call(func() C.int { return C.ingot_tokenizer_token_to_id(t.handle(), ct, &id) })
	return int32(id), err
}

// EOSIDs are the end-of-sequence ids.
func (t *Tokenizer) EOSIDs() ([]int32, error) {
	var p *C.int32_t
	var n C.size_t
	if err := call(func() C.int { return C.ingot_tokenizer_eos_ids(t.handle(), &p, &n) }); err != nil {
		return nil, err
	}
	return takeIDs(p, n), nil
}

// ApplyChatTemplate renders a conversation (JSON) with the chat template; addGenerationPrompt
// 1/0, or -1 for the conversation's own flag.
func (t *Tokenizer) ApplyChatTemplate(conversationJSON string, addGenerationPrompt int) (string, error) {
	cc := C.CString(conversationJSON)
	defer C.free(unsafe.Pointer(cc))
	var p *C.char
	err := call(func() C.int {
		return C.ingot_tokenizer_apply_chat_template(t.handle(), cc, C.int(addGenerationPrompt), &p)
	})
	if err != nil {
		return "", err
	}
	return takeString(p), nil
}

// StreamDecoder turns ids into text incrementally, never splitting a UTF-8 character.
type StreamDecoder struct {
	h C.ingot_stream_decoder
}

// NewStreamDecoder starts a decoder over t (t may be closed afterwards).
func (t *Tokenizer) NewStreamDecoder(skipSpecial bool) (*StreamDecoder, error) {
	var h C.ingot_stream_decoder
	if err := call(func() C.int { return C.ingot_stream_decoder_new(t.handle(), cBool(skipSpecial), &h) }); err != nil {
		return nil, err
	}
	d := &StreamDecoder{h: h}
	runtime.SetFinalizer(d, func(d *StreamDecoder) {
		if d.h != nil {
			capi.NoteLeak()
			C.ingot_stream_decoder_free(d.h)
		}
	})
	return d, nil
}

// Step adds one id and returns the newly completed text.
func (d *StreamDecoder) Step(id int32) (string, error) {
	var p *C.char
	if err := call(func() C.int { return C.ingot_stream_decoder_step(d.h, C.int32_t(id), &p) }); err != nil {
		return "", err
	}
	return takeString(p), nil
}

// Finish returns the text held back and resets.
func (d *StreamDecoder) Finish() (string, error) {
	var p *C.char
	if err := call(func() C.int { return C.ingot_stream_decoder_finish(d.h, &p) }); err != nil {
		return "", err
	}
	return takeString(p), nil
}

// Close releases the decoder.
func (d *StreamDecoder) Close() {
	if d == nil || d.h == nil {
		return
	}
	C.ingot_stream_decoder_free(d.h)
	d.h = nil
	runtime.SetFinalizer(d, nil)
}
