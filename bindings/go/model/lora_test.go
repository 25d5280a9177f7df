package model

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ingot"
)

// dataDir is tests/data (the parent of the fixture's models/ directory).
func dataDir(t testing.TB) string { return filepath.Dir(filepath.Dir(fixture(t))) }

// The PEFT reference ids of tests/data/lora/llama_f32/reference.json, [2, 16].
var peftIDs = []int32{239, 179, 14, 112, 17, 149, 78, 203, 108, 193, 124, 136, 57, 80, 148, 149,
	133, 29, 141, 216, 168, 75, 20, 47, 236, 78, 64, 0, 0, 0, 0, 0}

func forwardFloats(t testing.TB, m *Model, ids []int32, shape ...int64) []float32 {
	x := must(ingot.FromInt32(ids, shape...))
	defer x.Free()
	y := must(m.Forward(x))
	defer y.Free()
	return must(y.Float32s())
}

// relDiff is max |a - b| / max |b|.
func relDiff(a, b []float32) float64 {
	num, den := 0.0, 0.0
	for i := range b {
		num = math.Max(num, math.Abs(float64(a[i])-float64(b[i])))
		den = math.Max(den, math.Abs(float64(b[i])))
	}
	return num / den
}

func peftLogits(t testing.TB, key string) []float32 {
	m := must(ingot.LoadSafetensors(filepath.Join(dataDir(t), "lora", "llama_f32", "logits.safetensors")))
	defer ingot.FreeMap(m)
	return must(m[key].Float32s())
}

// A PEFT-saved adapter (written by transformers + peft) gives PEFT's logits loaded with the
// model, applied, fused, fused and saved, and through Fuse.
func TestAdapterMatchesPEFT(t *testing.T) {
	base := filepath.Join(dataDir(t), "models", "llama_f32")
	adir := filepath.Join(dataDir(t), "lora", "llama_f32", "init")
	want := peftLogits(t, "init")
	m := must(Load(base, Options{Device: "cpu", Adapter: adir}))
	defer m.Close()
	if d := relDiff(forwardFloats(t, m, peftIDs, 2, 16), want); d > 1e-5 {
		t.Fatalf("loaded with the adapter: rel diff %g", d)
	}
	must(0, m.RemoveAdapter())
	if d := relDiff(forwardFloats(t, m, peftIDs, 2, 16), want); d < 1e-3 {
		t.Fatalf("without the adapter the logits should differ from PEFT's adapted ones (%g)", d)
	}
	a := must(m.LoadAdapter(adir))
	defer a.Close()
	if r, s := must(a.Rank()), must(a.Scale()); r != 4 || s != 2 {
		t.Fatalf("rank %d scale %g, want 4 and 8/4", r, s)
	}
	if n := must(a.NumTargets()); n != 6 { // q_proj, v_proj of 3 layers
		t.Fatalf("%d targets", n)
	}
	params := must(a.Parameters())
	var total int64
	for _, p := range params {
		total += p.Size()
	}
	ingot.FreeMap(params)
	if len(params) != 12 || total != must(a.NumParameters()) {
		t.Fatalf("%d tensors, %d elements, NumParameters %d", len(params), total, must(a.NumParameters()))
	}
	must(0, m.ApplyAdapter(a))
	if d := relDiff(forwardFloats(t, m, peftIDs, 2, 16), want); d > 1e-5 {
		t.Fatalf("applied: rel diff %g", d)
	}
	if err := m.ApplyAdapter(a); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("a second adapter: %v", err)
	}
	out := t.TempDir()
	if err := m.Save(filepath.Join(out, "x"), ""); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("saving with an unfused adapter: %v", err)
	}
	other := must(m.NewAdapter(ingot.DefaultLoraConfig()))
	if err := m.FuseAdapter(other); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("fusing another adapter while one is applied: %v", err)
	}
	other.Close()
	must(0, m.FuseAdapter(a))
	fused := forwardFloats(t, m, peftIDs, 2, 16)
	if d := relDiff(fused, want); d > 1e-5 {
		t.Fatalf("fused: rel diff %g", d)
	}
	must(0, m.Save(filepath.Join(out, "fused"), ""))
	must(0, Fuse(base, adir, filepath.Join(out, "fused2"), Options{Device: "cpu"}))
	for _, dir := range []string{"fused", "fused2"} {
		m2 := must(Load(filepath.Join(out, dir), Options{Device: "cpu"}))
		got := forwardFloats(t, m2, peftIDs, 2, 16)
		if relDiff(got, fused) != 0 {
			t.Fatalf("%s: the saved checkpoint's logits differ", dir)
		}
		if err := m2.ApplyAdapter(a); !errors.Is(err, ingot.ErrInvalidArgument) {
			t.Fatalf("an adapter of another model: %v", err)
		}
		m2.Close()
	}
}

const trainText = "the quick brown fox jumps over the lazy dog"

// referenceLoss is the mean next-token cross-entropy of BOS + text + EOS, in float64 from the
// model's logits.
func referenceLoss(t *testing.T, m *Model) (float64, int64) {
	tok := must(m.Tokenizer())
	defer tok.Close()
	ids := append(must(tok.Encode(trainText, true)), must(tok.EOSIDs())[0])
	L := len(ids)
	logits := forwardFloats(t, m, ids, 1, int64(L))
	V := len(logits) / L
	sum := 0.0
	for p := 0; p+1 < L; p++ {
		row := logits[p*V : (p+1)*V]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = math.Max(mx, float64(v))
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		sum -= float64(row[ids[p+1]]) - mx - math.Log(z)
	}
	return sum / float64(L-1), int64(L - 1)
}

func TestTrainSaveReload(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	must(0, os.WriteFile(data, []byte(`{"text": "`+trainText+`"}`+"\n"), 0o644))
	want0, targets := referenceLoss(t, m)

	c := ingot.DefaultLoraConfig()
	c.Rank, c.Seed = 4, 3
	a := must(m.NewAdapter(c))
	defer a.Close()
	o := ingot.DefaultTrainOptions()
	o.Iters, o.BatchSize, o.LearningRate, o.Schedule = 12, 1, 1e-2, "constant"
	o.OutDir = filepath.Join(dir, "adapter")
	var steps []ingot.TrainProgress
	o.OnStep = func(p ingot.TrainProgress) bool { steps = append(steps, p); return true }
	r := must(m.Train(context.Background(), a, data, "", o))
	if len(steps) != 12 || r.Steps != 12 || r.Cancelled || steps[11].Step != 12 || steps[0].Iters != 12 {
		t.Fatalf("%d progress calls, result %+v", len(steps), r)
	}
	// A fresh adapter (B = 0) starts at the base model's loss.
	if d := math.Abs(float64(steps[0].Loss) - want0); d > 1e-5*want0 {
		t.Fatalf("first loss %g, cross-entropy of the base logits %g", steps[0].Loss, want0)
	}
	if steps[11].Loss > 0.5*steps[0].Loss || r.FinalLoss != steps[11].Loss {
		t.Fatalf("loss %g -> %g (final %g)", steps[0].Loss, steps[11].Loss, r.FinalLoss)
	}
	if r.Tokens != 12*targets || !math.IsNaN(r.ValLoss) || !math.IsNaN(steps[0].ValLoss) {
		t.Fatalf("tokens %d (want %d), val loss %g", r.Tokens, 12*targets, r.ValLoss)
	}

	// The saved adapter, loaded with the model, gives the logits of the trained one applied.
	ids := []int32{1, 375, 288, 83, 16, 331}
	must(0, m.ApplyAdapter(a))
	applied := forwardFloats(t, m, ids, 1, 6)
	if _, err := m.Train(context.Background(), a, data, "", o); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("training with an applied adapter: %v", err)
	}
	must(0, m.RemoveAdapter())
	m2 := must(Load(fixture(t), Options{Device: "cpu", Dtype: "float32", Adapter: o.OutDir}))
	defer m2.Close()
	if relDiff(forwardFloats(t, m2, ids, 1, 6), applied) != 0 {
		t.Fatal("reloaded adapter: logits differ")
	}

	// OnStep returning false stops without an error; a cancelled context returns ctx.Err().
	b := must(m.NewAdapter(c))
	defer b.Close()
	o.OutDir, o.Iters = "", 10
	n := 0
	o.OnStep = func(p ingot.TrainProgress) bool { n++; return n < 3 }
	r = must(m.Train(context.Background(), b, data, "", o))
	if !r.Cancelled || r.Steps != 3 || n != 3 {
		t.Fatalf("stop after 3: %+v, %d calls", r, n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	o.OnStep = func(p ingot.TrainProgress) bool {
		if p.Step == 2 {
			cancel()
		}
		return true
	}
	r, err := m.Train(ctx, b, data, "", o)
	if !errors.Is(err, context.Canceled) || r == nil || r.Steps != 2 {
		t.Fatalf("cancelled context: %v %+v", err, r)
	}
	if _, err := m.Train(ctx, b, data, "", o); !errors.Is(err, context.Canceled) {
		t.Fatalf("already cancelled: %v", err)
	}
	// A panicking callback is an ingot.ErrCallback, not a crash.
	o.OnStep = func(p ingot.TrainProgress) bool { panic("boom") }
	if _, err := m.Train(context.Background(), b, data, "", o); !errors.Is(err, ingot.ErrCallback) {
		t.Fatalf("panic: %v", err)
	}
	// Validation loss.
	valid := filepath.Join(dir, "valid.jsonl")
	must(0, os.WriteFile(valid, []byte(`{"prompt": "the quick", "completion": " brown fox"}`+"\n"), 0o644))
	o.OnStep, o.Iters, o.EvalEvery, o.MaskPrompt = nil, 2, 1, true
	r = must(m.Train(context.Background(), b, data, valid, o))
	if r.Steps != 2 || !(r.ValLoss > 0) {
		t.Fatalf("validation: %+v", r)
	}
}

func TestLoraErrors(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	var nilModel *Model
	if _, err := nilModel.NewAdapter(ingot.DefaultLoraConfig()); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model: %v", err)
	}
	var nilAdapter *ingot.Adapter
	if err := m.ApplyAdapter(nilAdapter); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil adapter: %v", err)
	}
	if err := nilAdapter.Save(t.TempDir()); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil adapter save: %v", err)
	}
	nilAdapter.Close() // fine
	if err := nilModel.RemoveAdapter(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model: %v", err)
	}
	if _, err := nilAdapter.Rank(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil adapter rank: %v", err)
	}
	if _, err := nilAdapter.Parameters(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil adapter parameters: %v", err)
	}
	if err := Fuse(fixture(t), "/nonexistent-adapter", t.TempDir(), Options{Device: "cpu"}); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("fuse with a missing adapter: %v", err)
	}
	if err := Fuse("/nonexistent-model", "/nonexistent-adapter", t.TempDir(), Options{}); err == nil {
		t.Fatal("fuse with a missing model")
	}
	c := ingot.DefaultLoraConfig()
	c.Rank = 0
	if _, err := m.NewAdapter(c); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("rank 0: %v", err)
	}
	c = ingot.DefaultLoraConfig()
	c.Targets = []string{"nope_proj"}
	if _, err := m.NewAdapter(c); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("unknown target: %v", err)
	}
	if _, err := m.LoadAdapter("/nonexistent-adapter"); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("missing adapter: %v", err)
	}
	if _, err := Load(fixture(t), Options{Adapter: "/nonexistent-adapter"}); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("missing adapter on load: %v", err)
	}
	// An adapter of another base model (other shapes) and a corrupt one.
	if _, err := m.LoadAdapter(filepath.Join(dataDir(t), "lora", "qwen3_f32_tied", "init")); !errors.Is(err, ingot.ErrFormat) {
		t.Fatalf("adapter of another model: %v", err)
	}
	dir := t.TempDir()
	a := must(m.NewAdapter(ingot.DefaultLoraConfig()))
	defer a.Close()
	must(0, a.Save(dir))
	must(0, os.WriteFile(filepath.Join(dir, "adapter_model.safetensors"), []byte("garbage!garbage!"), 0o644))
	if _, err := m.LoadAdapter(dir); !errors.Is(err, ingot.ErrFormat) {
		t.Fatalf("corrupt adapter: %v", err)
	}
	// Data and options.
	o := ingot.DefaultTrainOptions()
	o.Iters, o.BatchSize = 1, 1
	if _, err := m.Train(context.Background(), a, "/nonexistent.jsonl", "", o); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("missing data: %v", err)
	}
	bad := filepath.Join(dir, "bad.jsonl")
	must(0, os.WriteFile(bad, []byte("{\"text\": \"fine\"}\n{\"txt\": 3}\n"), 0o644))
	if _, err := m.Train(context.Background(), a, bad, "", o); !errors.Is(err, ingot.ErrFormat) {
		t.Fatalf("malformed data: %v", err)
	}
	good := filepath.Join(dir, "good.jsonl")
	must(0, os.WriteFile(good, []byte("{\"text\": \"fine words here\"}\n"), 0o644))
	o.Schedule = "exponential"
	if _, err := m.Train(context.Background(), a, good, "", o); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("bad schedule: %v", err)
	}
	o.Schedule, o.Iters = "", 0
	if _, err := m.Train(context.Background(), a, good, "", o); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("0 iters: %v", err)
	}
	o.Iters = 1
	other := loadFixture(t)
	defer other.Close()
	if _, err := other.Train(context.Background(), a, good, "", o); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("adapter of another model: %v", err)
	}
	if err := other.Save(dir, "int32"); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("int32 checkpoint: %v", err)
	}
	// Out of memory under a limit, then fine again.
	prev := must(ingot.SetMemoryLimit(ingot.CPU, 4096))
	_, err := m.Train(context.Background(), a, good, "", o)
	must(ingot.SetMemoryLimit(ingot.CPU, prev))
	if !errors.Is(err, ingot.ErrOutOfMemory) {
		t.Fatalf("memory limit: %v", err)
	}
	if r := must(m.Train(context.Background(), a, good, "", o)); r.Steps != 1 {
		t.Fatalf("%+v", r)
	}
}

// Adapters, training and reloading leave memory where it was: 20 cycles of a fresh adapter, two
// training steps, a save and a model load with the adapter.
func TestLoraNoLeaks(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	must(0, os.WriteFile(data, []byte(`{"text": "`+trainText+`"}`+"\n"), 0o644))
	m := loadFixture(t)
	defer m.Close()
	cycle := func() {
		a := must(m.NewAdapter(ingot.DefaultLoraConfig()))
		o := ingot.DefaultTrainOptions()
		o.Iters, o.BatchSize, o.OutDir = 2, 1, filepath.Join(dir, "adapter")
		must(m.Train(context.Background(), a, data, "", o))
		a.Close()
		m2 := must(Load(fixture(t), Options{Device: "cpu", Dtype: "float32", Adapter: o.OutDir}))
		m2.Close()
	}
	cycle() // warm-up: caches and lazily made state
	must(0, ingot.ClearCache(ingot.CPU))
	before := must(ingot.GetMemoryStats(ingot.CPU))
	for i := 0; i < 20; i++ {
		cycle()
	}
	must(0, ingot.ClearCache(ingot.CPU))
	after := must(ingot.GetMemoryStats(ingot.CPU))
	if after.Active != before.Active {
		t.Fatalf("active memory %d -> %d bytes", before.Active, after.Active)
	}
	if ingot.LeakedHandles() != 0 {
		t.Fatalf("%d handles reached the finalizer", ingot.LeakedHandles())
	}
}

// lossCurve reads a loss-curve JSONL file: the step lines' losses and the validation lines'.
func lossCurve(t *testing.T, path string) (steps []int64, losses []float64, valSteps []int64) {
	b := must(os.ReadFile(path))
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec struct {
			Step    int64    `json:"step"`
			Loss    *float64 `json:"loss"`
			LR      *float64 `json:"lr"`
			ValLoss *float64 `json:"val_loss"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: %q: %v", path, line, err)
		}
		switch {
		case rec.ValLoss != nil:
			valSteps = append(valSteps, rec.Step)
		case rec.Loss != nil && rec.LR != nil:
			steps, losses = append(steps, rec.Step), append(losses, *rec.Loss)
		default:
			t.Fatalf("%s: unexpected line %q", path, line)
		}
	}
	return
}

// adapterFloats is every factor of a, by name.
func adapterFloats(t *testing.T, a *ingot.Adapter) map[string][]float32 {
	p := must(a.Parameters())
	defer ingot.FreeMap(p)
	out := map[string][]float32{}
	for k, v := range p {
		out[k] = must(v.Float32s())
	}
	return out
}

// A run stopped by OnStep at step 3 of 6 after checkpoint-3 was written, resumed from that
// directory in a fresh model with an adapter of other initial values, gives bit for bit the
// losses and factors of an uninterrupted run (the CPU trainer is deterministic: same batches,
// dropout masks and float32 arithmetic); both loss curves hold the callback's losses. Bad
// checkpoints are errors that leave the adapter as it was.
func TestTrainResume(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	valid := filepath.Join(dir, "valid.jsonl")
	must(0, os.WriteFile(data, []byte(`{"text": "the quick brown fox jumps over the lazy dog"}
{"text": "a stitch in time saves nine"}
{"prompt": "two plus two is", "completion": " four"}
{"text": "all that glitters is not gold"}
{"text": "red sky at night"}
`), 0o644))
	must(0, os.WriteFile(valid, []byte(`{"text": "the quick brown fox"}`+"\n"), 0o644))
	c := ingot.DefaultLoraConfig()
	c.Rank, c.Alpha, c.Dropout, c.Targets, c.Seed = 4, 8, 0.1, []string{"q_proj", "v_proj", "down_proj"}, 3
	opts := func() ingot.TrainOptions {
		o := ingot.DefaultTrainOptions()
		o.Iters, o.BatchSize, o.GradAccum, o.LearningRate, o.Warmup, o.Seed, o.EvalEvery = 6, 2, 2, 1e-2, 2, 5, 3
		return o
	}
	run := func(c ingot.LoraConfig, o ingot.TrainOptions, stopAfter int) ([]ingot.TrainProgress, *ingot.TrainResult, map[string][]float32) {
		m := loadFixture(t)
		defer m.Close()
		a := must(m.NewAdapter(c))
		defer a.Close()
		var seen []ingot.TrainProgress
		o.OnStep = func(p ingot.TrainProgress) bool {
			seen = append(seen, p)
			return stopAfter == 0 || len(seen) < stopAfter
		}
		r := must(m.Train(context.Background(), a, data, valid, o))
		return seen, r, adapterFloats(t, a)
	}

	o := opts()
	o.LossLog = filepath.Join(dir, "straight", "loss.jsonl")
	straight, r, want := run(c, o, 0)
	if len(straight) != 6 || r.Steps != 6 {
		t.Fatalf("straight: %d steps", len(straight))
	}
	o = opts()
	o.OutDir, o.SaveEvery, o.LossLog = filepath.Join(dir, "run"), 3, filepath.Join(dir, "run", "loss.jsonl")
	first, r, _ := run(c, o, 3)
	ckpt := filepath.Join(o.OutDir, "checkpoint-3")
	if len(first) != 3 || !r.Cancelled {
		t.Fatalf("interrupted: %d steps, %+v", len(first), r)
	}
	if _, err := os.Stat(filepath.Join(ckpt, "optimizer.safetensors")); err != nil {
		t.Fatal(err)
	}
	o.SaveEvery, o.Resume = 0, ckpt
	c2 := c
	c2.Seed = 99 // other initial values: everything comes from the checkpoint
	rest, r, got := run(c2, o, 0)
	if len(rest) != 3 || r.Steps != 3 || r.Cancelled {
		t.Fatalf("resumed: %d steps, %+v", len(rest), r)
	}
	for i, p := range append(first, rest...) {
		if p.Step != straight[i].Step || p.Loss != straight[i].Loss {
			t.Fatalf("step %d: %d %v, uninterrupted %d %v", i, p.Step, p.Loss, straight[i].Step, straight[i].Loss)
		}
	}
	if rest[2].ValLoss != straight[5].ValLoss || math.IsNaN(rest[2].ValLoss) {
		t.Fatalf("val loss %v, uninterrupted %v", rest[2].ValLoss, straight[5].ValLoss)
	}
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%d factors, want %d", len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if len(g) != len(w) {
			t.Fatalf("%s: %d values, want %d", k, len(g), len(w))
		}
		for i := range w {
			if math.Float32bits(g[i]) != math.Float32bits(w[i]) {
				t.Fatalf("%s[%d] = %v, uninterrupted %v", k, i, g[i], w[i])
			}
		}
	}
	for _, log := range []string{filepath.Join(dir, "straight", "loss.jsonl"), o.LossLog} {
		steps, losses, vals := lossCurve(t, log)
		if len(steps) != 6 || len(vals) != 2 || vals[0] != 3 || vals[1] != 6 {
			t.Fatalf("%s: steps %v, validation at %v", log, steps, vals)
		}
		for i := range steps {
			if steps[i] != int64(i+1) || float32(losses[i]) != straight[i].Loss {
				t.Fatalf("%s line %d: step %d loss %v, callback %v", log, i, steps[i], losses[i], straight[i].Loss)
			}
		}
	}

	// Errors: a missing checkpoint, another rank, other target modules, other data options, a
	// corrupt optimizer state, SaveEvery without a directory. The adapter is unchanged.
	m := loadFixture(t)
	defer m.Close()
	bad := func(c ingot.LoraConfig, o ingot.TrainOptions, want error, needle string) {
		t.Helper()
		a := must(m.NewAdapter(c))
		defer a.Close()
		before := adapterFloats(t, a)
		_, err := m.Train(context.Background(), a, data, "", o)
		if !errors.Is(err, want) || !strings.Contains(err.Error(), needle) {
			t.Fatalf("want %v containing %q, got %v", want, needle, err)
		}
		after := adapterFloats(t, a)
		for k, v := range before {
			for i := range v {
				if math.Float32bits(v[i]) != math.Float32bits(after[k][i]) {
					t.Fatalf("%s changed after a failed resume", k)
				}
			}
		}
	}
	o = opts()
	o.Resume = filepath.Join(dir, "no-such-checkpoint")
	bad(c, o, ingot.ErrIO, "trainer_state.json")
	o.Resume = ckpt
	c8 := c
	c8.Rank = 8
	bad(c8, o, ingot.ErrFormat, "rank 4")
	ck := c
	ck.Targets = []string{"q_proj", "k_proj", "down_proj"}
	bad(ck, o, ingot.ErrFormat, "target modules")
	o.BatchSize = 1
	bad(c, o, ingot.ErrFormat, "other data or options")
	o = opts()
	o.Resume = ckpt
	must(0, os.WriteFile(filepath.Join(ckpt, "optimizer.safetensors"), []byte("garbage!garbage!"), 0o644))
	bad(c, o, ingot.ErrFormat, "optimizer.safetensors")
	o = opts()
	o.SaveEvery = 2
	bad(c, o, ingot.ErrInvalidArgument, "save_every")
}
