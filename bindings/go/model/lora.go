package model

/*
#include <stdlib.h>
#include "ingot/ingot.h"
int ingot_go_model_train_tramp(void* ctx, const ingot_train_progress* p);
*/
import "C"

import (
	"context"
	"fmt"
	"runtime/cgo"
	"strings"
	"unsafe"

	"ingot"
	"ingot/internal/capi"
)

func adapterHandle(a *ingot.Adapter) C.ingot_adapter { return C.ingot_adapter(capi.AdapterHandle(a)) }

func wrapAdapter(h C.ingot_adapter) *ingot.Adapter {
	return capi.WrapAdapter(unsafe.Pointer(h)).(*ingot.Adapter)
}

// NewAdapter makes a fresh adapter for m, initialised as PEFT does (the adapted model starts
// equal to the base).
func (m *Model) NewAdapter(c ingot.LoraConfig) (*ingot.Adapter, error) {
	cc := C.ingot_lora_config_default()
	cc.rank = C.int(c.Rank)
	cc.alpha = C.float(c.Alpha)
	cc.dropout = C.float(c.Dropout)
	cc.num_layers = C.int(c.NumLayers)
	cc.use_rslora = cBool(c.RSLoRA)
	cc.seed = C.uint64_t(c.Seed)
	if len(c.Targets) > 0 {
		cc.targets = C.CString(strings.Join(c.Targets, ","))
		defer C.free(unsafe.Pointer(cc.targets))
	}
	var h C.ingot_adapter
	if err := call(func() C.int { return C.ingot_adapter_new(m.handle(), &cc, &h) }); err != nil {
		return nil, err
	}
	return wrapAdapter(h), nil
}

// LoadAdapter reads an adapter directory (PEFT adapter_model.safetensors or mlx-lm
// adapters.safetensors, with adapter_config.json) for m, without applying it.
func (m *Model) LoadAdapter(dir string) (*ingot.Adapter, error) {
	cd := C.CString(dir)
	defer C.free(unsafe.Pointer(cd))
	var h C.ingot_adapter
	if err := call(func() C.int { return C.ingot_adapter_load(m.handle(), cd, &h) }); err != nil {
		return nil, err
	}
	return wrapAdapter(h), nil
}

// ApplyAdapter puts a snapshot of the adapter on its model, unfused (one adapter at a time).
func (m *Model) ApplyAdapter(a *ingot.Adapter) error {
	return call(func() C.int { return C.ingot_model_apply_adapter(m.handle(), adapterHandle(a)) })
}

// RemoveAdapter takes the applied adapter off (fine when there is none).
func (m *Model) RemoveAdapter() error {
	return call(func() C.int { return C.ingot_model_remove_adapter(m.handle()) })
}

// FuseAdapter merges the adapter into the weights: W + scale * B A in float32, rounded once to
// the model's dtype.
func (m *Model) FuseAdapter(a *ingot.Adapter) error {
	return call(func() C.int { return C.ingot_model_fuse_adapter(m.handle(), adapterHandle(a)) })
}

// Save writes the model as a Hugging Face checkpoint (model.safetensors in dtype, "" = the
// model's; config and tokenizer files from the directory it was loaded from). An unfused
// adapter is refused: fuse it first.
func (m *Model) Save(dir, dtype string) error {
	cd := C.CString(dir)
	defer C.free(unsafe.Pointer(cd))
	var cdt *C.char
	if dtype != "" {
		cdt = C.CString(dtype)
		defer C.free(unsafe.Pointer(cdt))
	}
	return call(func() C.int { return C.ingot_model_save(m.handle(), cd, cdt) })
}

// Fuse is `ingot fuse`: loads modelDir with the adapter in adapterDir, merges it and writes
// a full checkpoint to outDir.
func Fuse(modelDir, adapterDir, outDir string, opts Options) error {
	opts.Adapter = ""
	m, err := Load(modelDir, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	a, err := m.LoadAdapter(adapterDir)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := m.FuseAdapter(a); err != nil {
		return err
	}
	return m.Save(outDir, opts.Dtype)
}

type trainCallbacks struct {
	ctx    context.Context
	onStep func(ingot.TrainProgress) bool
	panic  error
}

//export goModelTrainCall
func goModelTrainCall(h C.uintptr_t, p *C.ingot_train_progress) (rc C.int) {
	cb := cgo.Handle(h).Value().(*trainCallbacks)
	rc = 1
	defer func() {
		if r := recover(); r != nil && cb.panic == nil {
			cb.panic = &ingot.Error{Code: ingot.StatusCallback, Message: fmt.Sprintf("[go] training callback panicked: %v", r)}
		}
	}()
	if cb.ctx != nil && cb.ctx.Err() != nil {
		return 1
	}
	if cb.onStep != nil && !cb.onStep(ingot.TrainProgress{Step: int64(p.step), Iters: int64(p.iters),
		Loss: float32(p.loss), LearningRate: float32(p.learning_rate), GradNorm: float32(p.grad_norm),
		Tokens: int64(p.tokens), Seconds: float64(p.seconds), ValLoss: float64(p.val_loss)}) {
		return 1
	}
	if cb.ctx != nil && cb.ctx.Err() != nil {
		return 1
	}
	return 0
}

// Train fine-tunes adapter a (made for m) on JSONL data: {"text"}, {"prompt","completion"} or
// {"messages"} lines (validJSONL may be ""). Cancelling ctx stops after the current step and
// returns ctx.Err() with the partial result; OnStep returning false stops without an error
// (Cancelled is set). The adapter keeps the values of the last finished step.
// With o.SaveEvery it writes resumable checkpoints, with o.Resume it continues from one, and
// with o.LossLog it appends the loss curve (see ingot.TrainOptions).
func (m *Model) Train(ctx context.Context, a *ingot.Adapter, trainJSONL, validJSONL string, o ingot.TrainOptions) (*ingot.TrainResult, error) {
	if ctx == nil {
		ctx = context.Background()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	c := C.ingot_train_options_default()
	c.iters = C.int64_t(o.Iters)
	c.batch_size = C.int(o.BatchSize)
	c.grad_accum = C.int(o.GradAccum)
	c.learning_rate = C.float(o.LearningRate)
	c.warmup = C.int64_t(o.Warmup)
	c.weight_decay = C.float(o.WeightDecay)
	c.max_grad_norm = C.float(o.MaxGradNorm)
	c.seed = C.uint64_t(o.Seed)
	c.grad_checkpoint = cBool(o.GradCheckpoint)
	c.mask_prompt = cBool(o.MaskPrompt)
	c.max_seq_len = C.int64_t(o.MaxSeqLen)
	c.eval_every = C.int64_t(o.EvalEvery)
	c.eval_batches = C.int64_t(o.EvalBatches)
	if o.Schedule != "" {
		c.schedule = C.CString(o.Schedule)
		defer C.free(unsafe.Pointer(c.schedule))
	}
	if o.OutDir != "" {
		c.out_dir = C.CString(o.OutDir)
		defer C.free(unsafe.Pointer(c.out_dir))
	}
	ck := C.ingot_train_checkpoint_options_default()
	ck.save_every = C.int64_t(o.SaveEvery)
	for _, f := range []struct {
		dst **C.char
		s   string
	}{{&ck.checkpoint_dir, o.CheckpointDir}, {&ck.resume, o.Resume}, {&ck.loss_log, o.LossLog}} {
		if f.s != "" {
			*f.dst = C.CString(f.s)
			defer C.free(unsafe.Pointer(*f.dst))
		}
	}
	ct := C.CString(trainJSONL)
	defer C.free(unsafe.Pointer(ct))
	var cv *C.char
	if validJSONL != "" {
		cv = C.CString(validJSONL)
		defer C.free(unsafe.Pointer(cv))
	}
	cb := &trainCallbacks{ctx: ctx, onStep: o.OnStep}
	ctxp, freeBox := box(cb)
	defer freeBox()
	var r C.ingot_train_result
	err := call(func() C.int {
		return C.ingot_lora_train_ex(m.handle(), adapterHandle(a), ct, cv, &c, &ck,
			C.ingot_train_fn(C.ingot_go_model_train_tramp), ctxp, &r)
	})
	if err != nil {
		return nil, err
	}
	res := &ingot.TrainResult{Steps: int64(r.steps), FinalLoss: float32(r.final_loss),
		ValLoss: float64(r.val_loss), Tokens: int64(r.tokens), Seconds: float64(r.seconds),
		Cancelled: r.cancelled != 0}
	if cb.panic != nil {
		return res, cb.panic
	}
	if res.Cancelled && ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}
