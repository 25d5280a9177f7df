package main

import (
	"encoding/json"
	"math"
	"os"
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

// The example's probabilities equal a softmax over the labels' log-likelihoods computed with
// Model.Score (a separate path: scoring each label as the continuation of the filled template,
// only its first token when the labels' first tokens all differ, as `ingot classify` documents).
func TestClassifyExample(t *testing.T) {
	texts := []string{"the protein folds in the cell", "the striker scored twice", "parliament passed the bill"}
	var in strings.Builder
	for _, s := range texts {
		line, _ := json.Marshal(map[string]string{"text": s})
		in.Write(append(line, '\n'))
	}
	labels := []string{" science", " sports", " politics"}
	f32 := model.Options{Device: "cpu", Dtype: "float32"}
	tmpl := "Sentence: {text}\nDomain:"
	var out strings.Builder
	if err := run(strings.NewReader(in.String()), &out, fixture(), f32, labels, tmpl, 2, 0); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != len(texts) {
		t.Fatalf("%d result lines for %d texts", len(lines), len(texts))
	}
	m, err := model.Load(fixture(), f32)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		t.Fatal(err)
	}
	defer tok.Close()
	for i, s := range texts {
		var rec struct {
			Label string             `json:"label"`
			Probs map[string]float64 `json:"probs"`
		}
		if err := json.Unmarshal([]byte(lines[i]), &rec); err != nil {
			t.Fatal(err)
		}
		filled := strings.Replace(tmpl, "{text}", s, 1)
		prompt, err := tok.Encode(filled, true)
		if err != nil {
			t.Fatal(err)
		}
		var ps, cs [][]int32
		for _, l := range labels {
			full, err := tok.Encode(filled+l, true)
			if err != nil {
				t.Fatal(err)
			}
			ps, cs = append(ps, prompt), append(cs, full[len(prompt):])
		}
		first := map[int32]bool{}
		for _, c := range cs {
			first[c[0]] = true
		}
		if len(first) == len(cs) {
			for k := range cs {
				cs[k] = cs[k][:1]
			}
		}
		sums, _, err := m.Score(ps, cs, 0)
		if err != nil {
			t.Fatal(err)
		}
		z, best := 0.0, 0
		for k, v := range sums {
			z += math.Exp(v)
			if v > sums[best] {
				best = k
			}
		}
		for k, l := range labels {
			if d := math.Abs(rec.Probs[l] - math.Exp(sums[k])/z); d > 1e-5 {
				t.Fatalf("text %d label %q: %g vs score softmax %g", i, l, rec.Probs[l], math.Exp(sums[k])/z)
			}
		}
		if rec.Label != labels[best] {
			t.Fatalf("text %d: label %q, score's best %q", i, rec.Label, labels[best])
		}
	}
	// Malformed input is an error naming the line.
	err = run(strings.NewReader("{\"text\": \"ok\"}\nnot json\n"), &out, fixture(), f32, labels, tmpl, 2, 0)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("malformed line: %v", err)
	}
}
