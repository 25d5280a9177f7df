package cache_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"ingot"
	"ingot/cache"
	"ingot/model"
)

func fixture() string {
	if d := os.Getenv("INGOT_FIXTURE"); d != "" {
		return d
	}
	return "../../../tests/data/models/llama_bf16_tied"
}

// New and Load make the same caches as the model's methods: a prefix prefilled once, saved,
// loaded back and classified against (the prompts' label probabilities equal the uncached ones).
func TestNewAndLoad(t *testing.T) {
	m, err := model.Load(fixture(), model.Options{Device: "cpu", Dtype: "float32"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	c, err := cache.New(m)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prefix := []int32{1, 41, 315, 93, 300}
	if err := c.Prefill(prefix); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "prefix.safetensors")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	l, err := cache.Load(m, path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got, _ := l.Tokens(); !reflect.DeepEqual(got, prefix) {
		t.Fatalf("loaded %v", got)
	}
	prompts := [][]int32{append(append([]int32{}, prefix...), 284, 347), append(append([]int32{}, prefix...), 7)}
	labels := [][]int32{{5}, {100}}
	got, err := l.Classify(prompts, labels, 0)
	if err != nil {
		t.Fatal(err)
	}
	want, err := m.Classify(prompts, labels, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		for k := range want[i] {
			if d := got[i][k] - want[i][k]; d > 1e-5 || d < -1e-5 {
				t.Fatalf("cached %v uncached %v", got, want)
			}
		}
	}
	if _, err := cache.Load(m, filepath.Join(t.TempDir(), "none")); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := cache.New(nil); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model: %v", err)
	}
}
