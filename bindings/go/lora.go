package ingot

/*
#include <stdlib.h>
#include "ingot/ingot.h"
*/
import "C"

import (
	"runtime"
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

// TrainOptions configure model.Model.Train; DefaultTrainOptions gives the defaults.
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

	// SaveEvery writes a resumable checkpoint <CheckpointDir>/checkpoint-<step> every N steps
	// (0: never), as `ingot lora train --save-every` does: the adapter (PEFT layout),
	// optimizer.safetensors (AdamW state) and trainer_state.json (step, data position, seed,
	// batch size, number of examples). A checkpoint is written before OnStep sees its step.
	SaveEvery int64
	// CheckpointDir holds the checkpoints ("" = OutDir; one of them is needed with SaveEvery).
	CheckpointDir string
	// Resume continues from such a checkpoint directory, as `--resume` does: the adapter gets
	// its factors, the optimizer its state, and training runs steps step+1 .. Iters on the data
	// where it left off; with the same data, options and adapter config the result is bit for
	// bit that of an uninterrupted run. A missing directory is an ErrIO; a corrupt one or one of
	// other data, options, rank, scale or target modules an ErrFormat, and the adapter is then
	// unchanged. TrainResult.Steps counts the steps this call ran.
	Resume string
	// LossLog appends the loss curve as JSONL, as `--loss-log` does ("" = none; the CLI's
	// default OUT/loss.jsonl does not apply): one line per step {"step", "loss", "lr",
	// "grad_norm", "tokens", "tok_per_s"} and one per validation {"step", "val_loss"}.
	LossLog string

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
