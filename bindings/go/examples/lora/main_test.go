package main

import (
	"context"
	"errors"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"ingot/model"
)

func fixture() string {
	if d := os.Getenv("INGOT_FIXTURE"); d != "" {
		return d
	}
	return "../../../../tests/data/models/llama_bf16_tied"
}

// Fine-tune on two sentences, save, reload with the adapter and fuse: the data's loss falls,
// the reloaded adapter's loss is the trained adapter's (its first step's loss in a fresh
// training run from it), and the fused float32 checkpoint gives the same loss.
func TestLoraExample(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "train.jsonl")
	text := `{"text": "the quick brown fox jumps over the lazy dog"}` + "\n" +
		`{"prompt": "the capital of france is", "completion": " paris"}` + "\n"
	if err := os.WriteFile(data, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	c := Config{Model: fixture(), Data: data, Out: filepath.Join(dir, "adapter"),
		Fuse: filepath.Join(dir, "fused"), Device: "cpu", Dtype: "float32", Prompt: "the capital of france is",
		Iters: 30, BatchSize: 2, Rank: 4, LR: 1e-2}
	var log strings.Builder
	rep, err := run(context.Background(), &log, c)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Train.Steps != 30 || rep.Train.Cancelled {
		t.Fatalf("train: %+v", rep.Train)
	}
	if !(rep.LossAfter < 0.5*rep.LossBefore) {
		t.Fatalf("loss %g before, %g after", rep.LossBefore, rep.LossAfter)
	}
	if math.Abs(rep.LossFused-rep.LossAfter) > 1e-4*rep.LossAfter {
		t.Fatalf("fused loss %g, adapter %g", rep.LossFused, rep.LossAfter)
	}
	for _, f := range []string{"adapter/adapter_model.safetensors", "adapter/adapter_config.json", "fused/model.safetensors", "fused/tokenizer.json"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(log.String(), "step 30/30") {
		t.Fatalf("progress log: %q", log.String())
	}
	// The saved adapter loads on its own.
	m, err := model.Load(fixture(), model.Options{Device: "cpu", Dtype: "float32"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	a, err := m.LoadAdapter(c.Out)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if r, _ := a.Rank(); r != 4 {
		t.Fatalf("rank %d", r)
	}
	// A cancelled context is reported.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c.Out, c.Fuse = filepath.Join(dir, "cancelled"), ""
	if _, err := run(ctx, io.Discard, c); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	// A missing data file is an error.
	c.Data = filepath.Join(dir, "missing.jsonl")
	if _, err := run(context.Background(), io.Discard, c); err == nil {
		t.Fatal("missing data must fail")
	}
}
