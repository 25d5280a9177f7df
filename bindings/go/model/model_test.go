package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"ingot"
	"ingot/sample"
)

// must unwraps a result; an error panics, which fails the running test with a trace.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// fixture is the tiny Llama checkpoint (INGOT_FIXTURE, or tests/data relative to this package).
func fixture(t testing.TB) string {
	if d := os.Getenv("INGOT_FIXTURE"); d != "" {
		return d
	}
	return "../../../tests/data/models/llama_bf16_tied"
}

func loadFixture(t testing.TB) *Model {
	return must(Load(fixture(t), Options{Device: "cpu", Dtype: "float32"}))
}

func TestGenerateMatchesTransformersAndCancels(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	if a := must(m.Architecture()); a != "llama" {
		t.Fatal(a)
	}
	// the fixture's config: 2 layers; loaded as asked (float32 on the CPU)
	if n := must(m.NumLayers()); n != 2 {
		t.Fatalf("NumLayers %d", n)
	}
	if d := must(m.Dtype()); d != ingot.Float32 {
		t.Fatalf("Dtype %v", d)
	}
	if d := must(m.Device()); d != ingot.CPU {
		t.Fatalf("Device %v", d)
	}
	prompt := []int32{1, 375, 288, 83}
	want := []int32{293, 152, 192, 186, 228, 108, 231, 228, 232, 215, 70, 205} // reference.json
	o := sample.DefaultOptions()
	o.MaxTokens = 12
	o.StopAtEOS = false
	var streamed strings.Builder
	o.OnText = func(s string) { streamed.WriteString(s) }
	g := must(m.Generate(context.Background(), prompt, o))
	if len(g.Tokens) != 12 || g.Finish != FinishLength {
		t.Fatalf("got %v %v", g.Tokens, g.Finish)
	}
	for i := range want {
		if g.Tokens[i] != want[i] {
			t.Fatalf("tokens %v want %v", g.Tokens, want)
		}
	}
	if streamed.String() != g.Text || g.Metrics.GeneratedTokens != 12 {
		t.Fatalf("streamed %q text %q", streamed.String(), g.Text)
	}
	// context cancellation stops at the next token
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	o.OnText = nil
	o.OnToken = func(row int, id int32) bool {
		if n++; n == 3 {
			cancel()
		}
		return true
	}
	g2, err := m.Generate(ctx, prompt, o)
	if !errors.Is(err, context.Canceled) || g2.Finish != FinishCancelled || len(g2.Tokens) > 4 {
		t.Fatalf("cancel: %v %v %v", err, g2.Finish, g2.Tokens)
	}
	// a panicking callback stops generation and comes back as ingot.ErrCallback
	o.OnToken = func(int, int32) bool { panic("callback boom") }
	if _, err := m.Generate(context.Background(), prompt, o); !errors.Is(err, ingot.ErrCallback) || !strings.Contains(err.Error(), "callback boom") {
		t.Fatalf("panic in OnToken: %v", err)
	}
	// an already cancelled context generates nothing
	if _, err := m.Generate(ctx, prompt, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	// batch: row 0 equals the single greedy run
	o = sample.DefaultOptions()
	o.MaxTokens = 12
	o.StopAtEOS = false
	rows, fin, _, err := m.GenerateBatch(context.Background(), [][]int32{prompt, {1, 376, 383}}, o)
	if err != nil || len(rows) != 2 || fin[0] != FinishLength {
		t.Fatalf("batch %v %v", err, fin)
	}
	for i := range want {
		if rows[0][i] != want[i] {
			t.Fatalf("batch row 0 %v", rows[0])
		}
	}
	if _, err := m.Generate(context.Background(), nil, o); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("empty prompt: %v", err)
	}
}

func TestScoreClassifyEmbedAgree(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	prompts := [][]int32{{1, 375, 288, 83}, {1, 376, 383, 352, 84}}
	labels := [][]int32{{293}, {77}, {142}}
	probs := must(m.Classify(prompts, labels, 0))
	// classify = softmax over the labels' log-likelihoods, which Score computes separately
	for i, p := range prompts {
		var ps, cs [][]int32
		for _, l := range labels {
			ps, cs = append(ps, p), append(cs, l)
		}
		sums, per, err := m.Score(ps, cs, 0)
		if err != nil {
			t.Fatal(err)
		}
		z := 0.0
		for _, s := range sums {
			z += math.Exp(s)
		}
		for k, s := range sums {
			if math.Abs(probs[i][k]-math.Exp(s)/z) > 1e-5 {
				t.Fatalf("classify %v vs score softmax %v", probs[i], sums)
			}
			if len(per[k]) != 1 || per[k][0] != s {
				t.Fatal("per-token logprobs")
			}
		}
	}
	tp := must(m.ClassifyTexts("Review: {text}\nGood?", []string{" yes", " no"}, []string{"great", "awful"}, 0))
	for _, row := range tp {
		if math.Abs(row[0]+row[1]-1) > 1e-9 {
			t.Fatalf("probs %v", row)
		}
	}
	if _, err := m.ClassifyTexts("no placeholder", []string{"a", "b"}, []string{"x"}, 0); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("template error: %v", err)
	}
	if _, err := m.Classify([][]int32{{1, 99999}}, labels, 0); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("bad ids: %v", err)
	}
	emb := must(m.Embed(prompts, PoolLast, 0))
	if e := must(m.HiddenSize()); len(emb[0]) != int(e) {
		t.Fatal("embed size")
	}
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load("/nonexistent-model", Options{}); err == nil {
		t.Fatal("missing model loaded")
	}
	var nilModel *Model
	if _, err := nilModel.VocabSize(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model: %v", err)
	}
	if _, err := nilModel.NumLayers(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model NumLayers: %v", err)
	}
	if _, err := nilModel.Dtype(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model Dtype: %v", err)
	}
	if _, err := nilModel.Device(); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil model Device: %v", err)
	}
	nilModel.Close() // fine
}

func rssKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:")), "%d", &kb)
			return kb
		}
	}
	return -1
}

// Memory stays flat over 100 model load/close cycles generating 10,000 tokens in all: the
// allocator's active bytes return to where they were, the process RSS does not grow after the
// first cycles, and no handle needed the finalizer.
func TestNoLeaks(t *testing.T) {
	if err := ingot.ClearCache(ingot.CPU); err != nil {
		t.Fatal(err)
	}
	before := must(ingot.GetMemoryStats(ingot.CPU))
	var rss10 int64
	tokens := 0
	for i := 0; i < 100; i++ {
		m := loadFixture(t)
		o := sample.DefaultOptions()
		o.MaxTokens = 100
		o.StopAtEOS = false
		tokens += len(must(m.Generate(context.Background(), []int32{1, 375, 288, 83}, o)).Tokens)
		m.Close()
		if i == 9 {
			rss10 = rssKB()
		}
	}
	after := must(ingot.GetMemoryStats(ingot.CPU))
	if tokens != 10000 {
		t.Fatalf("%d tokens", tokens)
	}
	if after.Active != before.Active {
		t.Fatalf("active memory %d -> %d bytes", before.Active, after.Active)
	}
	if grow := rssKB() - rss10; grow > 4096 {
		t.Fatalf("RSS grew by %d kB between cycle 10 and 100", grow)
	}
	if ingot.LeakedHandles() != 0 {
		t.Fatalf("%d handles reached the finalizer", ingot.LeakedHandles())
	}
}

// BenchmarkClassifyTexts: prompts/s of ClassifyTexts on the fixture (go test -bench .).
func BenchmarkClassifyTexts(b *testing.B) {
	m := loadFixture(b)
	defer m.Close()
	words := strings.Fields("the quantum protein election football match parliament molecule team striker")
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = strings.Join(words[i%5:5+i%5], " ")
	}
	labels := []string{" science", " sports", " politics"}
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := m.ClassifyTexts("Sentence: {text}\nDomain:", labels, texts, 64); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(texts))/time.Since(start).Seconds(), "prompts/s")
}
