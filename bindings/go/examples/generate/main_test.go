package main

import (
	"context"
	"os"
	"strings"
	"testing"

	"ingot/model"
	"ingot/tokenizer"
)

func fixture() string {
	if d := os.Getenv("INGOT_FIXTURE"); d != "" {
		return d
	}
	return "../../../../tests/data/models/llama_bf16_tied"
}

// The example's streamed text is the decoded greedy continuation transformers produced for the
// fixture (tests/data/models/llama_bf16_tied/reference.json, greedy.single[0]).
func TestGenerateExample(t *testing.T) {
	want := []int32{293, 152, 192, 186, 228, 108, 231, 228, 232, 215, 70, 205}
	var out strings.Builder
	// "Hello" encodes to the reference prompt [1, 375, 288, 83].
	g, err := run(context.Background(), &out, fixture(), model.Options{Device: "cpu", Dtype: "float32"},
		"Hello", 12, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i, id := range want {
		if g.Tokens[i] != id {
			t.Fatalf("tokens %v, transformers %v", g.Tokens, want)
		}
	}
	tok, err := tokenizer.Load(fixture())
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	text, err := tok.Decode(want, true)
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != text {
		t.Fatalf("streamed %q, decoded reference %q", out.String(), text)
	}
	if _, err := run(context.Background(), &out, "/nonexistent", model.Options{}, "x", 1, 0); err == nil {
		t.Fatal("a missing model must fail")
	}
}
