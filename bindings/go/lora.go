package ingot

/*
#include <stdlib.h>
#include "ingot/ingot.h"
void* ingot_go_box(uintptr_t h);
void ingot_go_box_free(void* p);
int ingot_go_train_tramp(void* ctx, const ingot_train_progress* p);
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"runtime/cgo"
	"strings"
	"unsafe"
)

// LoraConfig says what a fresh adapter adapts (PEFT's LoraConfig fields that matter).
type LoraConfig struct {
	Rank      int      // r
	Alpha     float32  // scale = Alpha / Rank (Alpha / sqrt(Rank) with RSLoRA)
	Dropout   float32  // LoRA dropout while training
	Targets   []string // module names ("q_proj", "v_proj") or {"all-linear"}; empty: q_proj, v_proj
	NumLayers int      // adapt only the last N decoder layers (0: all)
	RSLoRA    bool
	Seed      uint64 // init of lora_A (lora_B starts at 0)
}

// DefaultLoraConfig: r = 8, alpha = 16, q_proj and v_proj of every layer.
func DefaultLoraConfig() LoraConfig {
	d := C.ingot_lora_config_default()
	return LoraConfig{Rank: int(d.rank), Alpha: float32(d.alpha), Targets: []string{"q_proj", "v_proj"}}
}

// Adapter is a LoRA adapter made for one model: float32 factors A [r, in] and B [out, r] per
// adapted linear layer.
type Adapter struct {
	h C.ingot_adapter
}

func wrapAdapter(h C.ingot_adapter) *Adapter {
	a := &Adapter{h: h}
	runtime.SetFinalizer(a, func(a *Adapter) {
		if a.h != nil {
			noteLeak()
			C.ingot_adapter_free(a.h)
		}
	})
	return a
}

func (a *Adapter) handle() C.ingot_adapter {
	if a == nil {
		return nil
	}
	return a.h
}

// Close releases the adapter (an adapter applied to a model stays applied).
func (a *Adapter) Close() {
	if a == nil || a.h == nil {
		return
	}
	C.ingot_adapter_free(a.h)
	a.h = nil
	runtime.SetFinalizer(a, nil)
}

// NewAdapter makes a fresh adapter for m, initialised as PEFT does (the adapted model starts
// equal to the base).
func (m *Model) NewAdapter(c LoraConfig) (*Adapter, error) {
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
func (m *Model) LoadAdapter(dir string) (*Adapter, error) {
	cd := C.CString(dir)
	defer C.free(unsafe.Pointer(cd))
	var h C.ingot_adapter
	if err := call(func() C.int { return C.ingot_adapter_load(m.handle(), cd, &h) }); err != nil {
		return nil, err
	}
	return wrapAdapter(h), nil
}

// Save writes dir/adapter_model.safetensors and dir/adapter_config.json (PEFT's layout).
func (a *Adapter) Save(dir string) error {
	cd := C.CString(dir)
	defer C.free(unsafe.Pointer(cd))
	return call(func() C.int { return C.ingot_adapter_save(a.handle(), cd) })
}

// Rank is r.
func (a *Adapter) Rank() (int, error) {
	var r C.int
	err := call(func() C.int { return C.ingot_adapter_rank(a.handle(), &r) })
	return int(r), err
}

// Scale is the factor of B A.
func (a *Adapter) Scale() (float32, error) {
	var s C.float
	err := call(func() C.int { return C.ingot_adapter_scale(a.handle(), &s) })
	return float32(s), err
}

// NumTargets is the number of adapted linear layers.
func (a *Adapter) NumTargets() (int, error) {
	var n C.size_t
	err := call(func() C.int { return C.ingot_adapter_num_targets(a.handle(), &n) })
	return int(n), err
}

// NumParameters is the number of trainable elements.
func (a *Adapter) NumParameters() (int64, error) {
	var n C.int64_t
	err := call(func() C.int { return C.ingot_adapter_num_parameters(a.handle(), &n) })
	return int64(n), err
}

// Parameters are the factors ("<module>.lora_A.weight", "<module>.lora_B.weight"); free them
// with FreeMap.
func (a *Adapter) Parameters() (map[string]*Array, error) {
	var h C.ingot_named_arrays
	if err := call(func() C.int { return C.ingot_adapter_parameters(a.handle(), &h) }); err != nil {
		return nil, err
	}
	return fromNamed(h)
}

// ApplyAdapter puts a snapshot of the adapter on its model, unfused (one adapter at a time).
func (m *Model) ApplyAdapter(a *Adapter) error {
	return call(func() C.int { return C.ingot_model_apply_adapter(m.handle(), a.handle()) })
}

// RemoveAdapter takes the applied adapter off (fine when there is none).
func (m *Model) RemoveAdapter() error {
	return call(func() C.int { return C.ingot_model_remove_adapter(m.handle()) })
}

// FuseAdapter merges the adapter into the weights: W + scale * B A in float32, rounded once to
// the model's dtype.
func (m *Model) FuseAdapter(a *Adapter) error {
	return call(func() C.int { return C.ingot_model_fuse_adapter(m.handle(), a.handle()) })
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
func Fuse(modelDir, adapterDir, outDir string, opts ModelOptions) error {
	opts.Adapter = ""
	m, err := LoadModel(modelDir, opts)
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

// TrainOptions configure Model.Train; DefaultTrainOptions gives the defaults.
type TrainOptions struct {
	Iters          int64 // optimizer steps
	BatchSize      int
	GradAccum      int
	LearningRate   float32
	Warmup         int64  // linear warmup steps
	Schedule       string // "cosine" (""), "linear", "constant"
	WeightDecay    float32
	MaxGradNorm    float32 // 0: no clipping
	Seed           uint64  // batch order
	GradCheckpoint bool
	MaskPrompt     bool  // loss on completions / assistant messages only
	MaxSeqLen      int64 // truncate examples (0: no limit)
	EvalEvery      int64 // validation loss every N steps (needs validation data)
	EvalBatches    int64
	OutDir         string // the final adapter is saved here ("" = not saved)
	// OnStep sees every step's figures; returning false stops training after that step.
	OnStep func(TrainProgress) bool
}

// DefaultTrainOptions: 100 steps of 4 examples, lr 1e-4, cosine decay, clipping at 1.
func DefaultTrainOptions() TrainOptions {
	d := C.ingot_train_options_default()
	return TrainOptions{Iters: int64(d.iters), BatchSize: int(d.batch_size), GradAccum: int(d.grad_accum),
		LearningRate: float32(d.learning_rate), WeightDecay: float32(d.weight_decay),
		MaxGradNorm: float32(d.max_grad_norm)}
}

// TrainProgress is one optimizer step.
type TrainProgress struct {
	Step, Iters  int64
	Loss         float32
	LearningRate float32
	GradNorm     float32
	Tokens       int64
	Seconds      float64
	ValLoss      float64 // NaN when not evaluated at this step
}

// TrainResult sums up a Train call.
type TrainResult struct {
	Steps     int64
	FinalLoss float32
	ValLoss   float64 // NaN when never evaluated
	Tokens    int64
	Seconds   float64
	Cancelled bool
}

type trainCallbacks struct {
	ctx    context.Context
	onStep func(TrainProgress) bool
	panic  error
}

//export goTrainCall
func goTrainCall(h C.uintptr_t, p *C.ingot_train_progress) (rc C.int) {
	cb := cgo.Handle(h).Value().(*trainCallbacks)
	rc = 1
	defer func() {
		if r := recover(); r != nil && cb.panic == nil {
			cb.panic = &Error{StatusCallback, fmt.Sprintf("[go] training callback panicked: %v", r)}
		}
	}()
	if cb.ctx != nil && cb.ctx.Err() != nil {
		return 1
	}
	if cb.onStep != nil && !cb.onStep(TrainProgress{int64(p.step), int64(p.iters), float32(p.loss),
		float32(p.learning_rate), float32(p.grad_norm), int64(p.tokens), float64(p.seconds),
		float64(p.val_loss)}) {
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
func (m *Model) Train(ctx context.Context, a *Adapter, trainJSONL, validJSONL string, o TrainOptions) (*TrainResult, error) {
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
	ct := C.CString(trainJSONL)
	defer C.free(unsafe.Pointer(ct))
	var cv *C.char
	if validJSONL != "" {
		cv = C.CString(validJSONL)
		defer C.free(unsafe.Pointer(cv))
	}
	cb := &trainCallbacks{ctx: ctx, onStep: o.OnStep}
	box := C.ingot_go_box(C.uintptr_t(cgo.NewHandle(cb)))
	defer C.ingot_go_box_free(box)
	var r C.ingot_train_result
	err := call(func() C.int {
		return C.ingot_lora_train(m.handle(), a.handle(), ct, cv, &c,
			C.ingot_train_fn(C.ingot_go_train_tramp), box, &r)
	})
	if err != nil {
		return nil, err
	}
	res := &TrainResult{int64(r.steps), float32(r.final_loss), float64(r.val_loss), int64(r.tokens),
		float64(r.seconds), r.cancelled != 0}
	if cb.panic != nil {
		return res, cb.panic
	}
	if res.Cancelled && ctx.Err() != nil {
		return res, ctx.Err()
	}
	return res, nil
}
