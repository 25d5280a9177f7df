package model

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"ingot"
	"ingot/sample"
)

// reference.json of the Llama fixture: sequences[2].ids, and transformers' float64 logits at
// the last position of its prefixes of length 21, 25, 30 and 37 for the labels 5, 100, 300.
var (
	refSeq = []int32{1, 41, 315, 93, 300, 284, 347, 264, 278, 69, 79, 270, 265, 84, 282, 277, 264,
		319, 284, 280, 264, 316, 83, 84, 271, 264, 266, 294, 288, 280, 367, 274, 76, 278, 372, 334, 288}
	refLens   = []int{21, 25, 30, 37}
	refLogits = [][]float64{{1.561791065, 0.3603072874, 0.9813453603},
		{1.853002826, -1.723293397, -1.306204666},
		{2.170147349, -1.412249173, -1.900067188},
		{1.942975836, -1.180752428, -0.6172203362}}
)

func greedy12() sample.Options {
	o := sample.DefaultOptions()
	o.MaxTokens = 12
	o.StopAtEOS = false
	return o
}

func wantInvalid(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("%s: want ErrInvalidArgument, got %v", what, err)
	}
}

func TestPromptCacheGenerate(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	c := must(m.NewPromptCache())
	defer c.Close()
	if c.Model() != m {
		t.Fatal("Model()")
	}
	if n := must(c.Len()); n != 0 {
		t.Fatalf("new cache holds %d", n)
	}
	prompt := []int32{1, 375, 288, 83}
	want := []int32{293, 152, 192, 186, 228, 108, 231, 228, 232, 215, 70, 205} // reference.json
	if err := c.Prefill(prompt[:3]); err != nil {
		t.Fatal(err)
	}
	if got := must(c.Tokens()); !reflect.DeepEqual(got, prompt[:3]) {
		t.Fatalf("tokens %v", got)
	}
	if must(c.Bytes()) <= 0 {
		t.Fatal("no bytes")
	}
	var streamed strings.Builder
	for i := 0; i < 2; i++ { // the second time the whole prompt is cached
		o := greedy12()
		o.OnText = func(s string) { streamed.WriteString(s) }
		g := must(c.Generate(context.Background(), prompt, o))
		if !reflect.DeepEqual(g.Tokens, want) || g.Finish != FinishLength {
			t.Fatalf("run %d: %v %v", i, g.Tokens, g.Finish)
		}
		if held := must(c.Tokens()); !reflect.DeepEqual(held, append(append([]int32{}, prompt...), want[:11]...)) {
			t.Fatalf("cache holds %v", held)
		}
	}
	plain := must(m.Generate(context.Background(), prompt, greedy12()))
	if streamed.String() != plain.Text+plain.Text {
		t.Fatalf("streamed %q, uncached text %q", streamed.String(), plain.Text)
	}

	// a copy is independent; trim; clear
	d := must(c.Copy())
	defer d.Close()
	if err := d.Trim(2); err != nil {
		t.Fatal(err)
	}
	if must(d.Len()) != 2 || must(c.Len()) != 15 {
		t.Fatal("copy is not independent")
	}
	wantInvalid(t, "trim past the end", d.Trim(3))
	wantInvalid(t, "negative trim", d.Trim(-1))
	if err := d.Clear(); err != nil || must(d.Len()) != 0 {
		t.Fatalf("clear: %v", err)
	}

	// save and load
	path := filepath.Join(t.TempDir(), "c.safetensors")
	if err := c.Save(path); err != nil {
		t.Fatal(err)
	}
	l := must(m.LoadPromptCache(path))
	defer l.Close()
	if !reflect.DeepEqual(must(l.Tokens()), must(c.Tokens())) {
		t.Fatal("loaded tokens differ")
	}
	if g := must(l.Generate(context.Background(), prompt, greedy12())); !reflect.DeepEqual(g.Tokens, want) {
		t.Fatalf("loaded cache generates %v", g.Tokens)
	}
	if _, err := m.LoadPromptCache(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("missing file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.safetensors")
	if err := os.WriteFile(bad, []byte("not safetensors"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := m.LoadPromptCache(bad); !errors.Is(err, ingot.ErrFormat) {
		t.Fatalf("corrupt file: %v", err)
	}

	// context cancellation stops at the next token; the cache holds what was generated
	ctx, cancel := context.WithCancel(context.Background())
	o := greedy12()
	n := 0
	o.OnToken = func(int, int32) bool {
		if n++; n == 3 {
			cancel()
		}
		return true
	}
	g, err := c.Generate(ctx, prompt, o)
	if !errors.Is(err, context.Canceled) || g.Finish != FinishCancelled || !reflect.DeepEqual(g.Tokens, want[:len(g.Tokens)]) {
		t.Fatalf("cancel: %v %v %v", err, g.Finish, g.Tokens)
	}
	if must(c.Len()) != int64(len(prompt)+len(g.Tokens)-1) {
		t.Fatal("cache after cancel")
	}
	if _, err := c.Generate(ctx, prompt, greedy12()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	// a panicking callback comes back as ErrCallback
	o.OnToken = func(int, int32) bool { panic("cache boom") }
	if _, err := c.Generate(context.Background(), prompt, o); !errors.Is(err, ingot.ErrCallback) {
		t.Fatalf("panic: %v", err)
	}
}

func TestPromptCacheClassify(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	c := must(m.NewPromptCache())
	defer c.Close()
	if err := c.Prefill(refSeq[:20]); err != nil {
		t.Fatal(err)
	}
	var prompts [][]int32
	for _, n := range refLens {
		prompts = append(prompts, refSeq[:n])
	}
	labels := [][]int32{{5}, {100}, {300}}
	probs := must(c.Classify(prompts, labels, 2))
	for i, lg := range refLogits {
		z := 0.0
		for _, v := range lg {
			z += math.Exp(v)
		}
		for k, v := range lg {
			if math.Abs(probs[i][k]-math.Exp(v)/z) > 1e-4 {
				t.Fatalf("prompt %d: %v, transformers' logits %v", i, probs[i], lg)
			}
		}
	}
	plain := must(m.Classify(prompts, labels, 0))
	for i := range plain {
		for k := range plain[i] {
			if math.Abs(plain[i][k]-probs[i][k]) > 1e-5 {
				t.Fatalf("cached %v uncached %v", probs, plain)
			}
		}
	}
	if !reflect.DeepEqual(must(c.Tokens()), refSeq[:20]) {
		t.Fatal("classify changed the cache")
	}
	// a prompt equal to the cached prefix is fine
	eq := must(c.Classify([][]int32{refSeq[:20], refSeq[:25]}, labels, 1))
	eqPlain := must(m.Classify([][]int32{refSeq[:20], refSeq[:25]}, labels, 0))
	for i := range eq {
		for k := range eq[i] {
			if math.Abs(eq[i][k]-eqPlain[i][k]) > 1e-5 {
				t.Fatalf("cached %v uncached %v", eq, eqPlain)
			}
		}
	}
	_, err := c.Classify([][]int32{refSeq[:19]}, labels, 0)
	wantInvalid(t, "prompt shorter than the cache", err)
	_, err = c.Classify([][]int32{{1, 375, 288}}, labels, 0)
	wantInvalid(t, "prompt not starting with the cache", err)
	_, err = c.Classify(prompts, labels[:1], 0)
	wantInvalid(t, "one label", err)
	_, err = c.Classify(prompts, labels, -1)
	wantInvalid(t, "negative batch", err)

	// continuations scored after the cached prefix, against transformers' float64 log-softmax
	// (reference.json): kSeq[:P] then kSeq[P:P+C] for (P, C) = (25, 3), (20, 2)
	sums, per, err := c.Score([][]int32{refSeq[:25], refSeq[:20]}, [][]int32{refSeq[25:28], refSeq[20:22]}, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantTok := [][]float64{{-9.5417690395, -5.5238538658, -6.664760707}, {-7.1502219675, -12.634691845}}
	for i := range wantTok {
		s := 0.0
		for j, w := range wantTok[i] {
			if math.Abs(per[i][j]-w) > 1e-4 {
				t.Fatalf("score %d: %v want %v", i, per[i], wantTok[i])
			}
			s += w
		}
		if math.Abs(sums[i]-s) > 1e-4 {
			t.Fatalf("sum %d: %v want %v", i, sums[i], s)
		}
	}
	_, _, err = c.Score([][]int32{{1, 2}}, [][]int32{{3}}, 0)
	wantInvalid(t, "score of a prompt not starting with the cache", err)
	_, _, err = c.Score([][]int32{refSeq[:20]}, nil, 0)
	wantInvalid(t, "score count mismatch", err)

	// texts through a template prefix
	tmpl := "Review: {text}\nSentiment:"
	labelsText := []string{" good", " bad"}
	texts := []string{"The food was great.", "Slow service and cold soup!", "ok"}
	tc := must(m.NewPromptCache())
	defer tc.Close()
	if err := tc.PrefillTemplate(tmpl); err != nil {
		t.Fatal(err)
	}
	tp := must(tc.ClassifyTexts(tmpl, labelsText, texts, 0))
	want := must(m.ClassifyTexts(tmpl, labelsText, texts, 0))
	for i := range want {
		for k := range want[i] {
			if math.Abs(tp[i][k]-want[i][k]) > 1e-5 {
				t.Fatalf("cached %v uncached %v", tp, want)
			}
		}
	}
	wantInvalid(t, "template of a filled cache", tc.PrefillTemplate(tmpl))
	_, err = tc.ClassifyTexts("Other: {text}", labelsText, texts, 0)
	wantInvalid(t, "another template", err)
	_, err = tc.ClassifyTexts("no placeholder", labelsText, texts, 0)
	wantInvalid(t, "no placeholder", err)
}

func TestPromptCacheErrors(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	var nilCache *PromptCache
	nilCache.Close() // fine
	_, err := nilCache.Len()
	wantInvalid(t, "nil cache", err)
	wantInvalid(t, "nil cache prefill", nilCache.Prefill([]int32{1}))
	_, err = nilCache.Generate(context.Background(), []int32{1}, greedy12())
	wantInvalid(t, "nil cache generate", err)

	c := must(m.NewPromptCache())
	wantInvalid(t, "no ids", c.Prefill(nil))
	wantInvalid(t, "id outside the vocabulary", c.Prefill([]int32{1, 384}))
	if must(c.Len()) != 0 {
		t.Fatal("a failed prefill changed the cache")
	}
	_, err = c.Generate(context.Background(), nil, greedy12())
	wantInvalid(t, "empty prompt", err)

	// a cache whose model was closed: what needs the model fails, what it holds is still there
	m2 := loadFixture(t)
	c2 := must(m2.NewPromptCache())
	if err := c2.Prefill([]int32{1, 375}); err != nil {
		t.Fatal(err)
	}
	m2.Close()
	wantInvalid(t, "prefill after the model closed", c2.Prefill([]int32{288}))
	_, err = c2.Generate(context.Background(), []int32{1, 375, 288}, greedy12())
	wantInvalid(t, "generate after the model closed", err)
	if !reflect.DeepEqual(must(c2.Tokens()), []int32{1, 375}) {
		t.Fatal("tokens after the model closed")
	}
	c2.Close()

	// stale after an adapter is applied; usable again once cleared
	if err := c.Prefill([]int32{1, 375}); err != nil {
		t.Fatal(err)
	}
	a := must(m.NewAdapter(ingot.DefaultLoraConfig()))
	defer a.Close()
	if err := m.ApplyAdapter(a); err != nil {
		t.Fatal(err)
	}
	_, err = c.Generate(context.Background(), []int32{1, 375, 288, 83}, greedy12())
	wantInvalid(t, "stale cache", err)
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Generate(context.Background(), []int32{1, 375, 288, 83}, greedy12()); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, "save with an adapter", c.Save(filepath.Join(t.TempDir(), "x")))
	if err := m.RemoveAdapter(); err != nil {
		t.Fatal(err)
	}

	// out of memory under a limit: ErrOutOfMemory, and the cache is as it was
	if err := c.Clear(); err != nil {
		t.Fatal(err)
	}
	if err := c.Prefill(refSeq[:4]); err != nil {
		t.Fatal(err)
	}
	st := must(ingot.GetMemoryStats(ingot.CPU))
	prev := must(ingot.SetMemoryLimit(ingot.CPU, st.Active+256))
	err = c.Prefill(refSeq[4:8])
	if _, e := ingot.SetMemoryLimit(ingot.CPU, prev); e != nil {
		t.Fatal(e)
	}
	if !errors.Is(err, ingot.ErrOutOfMemory) {
		t.Fatalf("prefill over the memory limit: %v", err)
	}
	if !reflect.DeepEqual(must(c.Tokens()), refSeq[:4]) {
		t.Fatal("a failed prefill changed the cache")
	}
	if err := c.Prefill(refSeq[4:8]); err != nil {
		t.Fatal(err)
	}

	c.Close()
	c.Close() // twice is fine
	_, err = c.Len()
	wantInvalid(t, "closed cache", err)
	if ingot.LeakedHandles() != 0 {
		t.Fatalf("%d handles reached the finalizer", ingot.LeakedHandles())
	}
}

// 50 cycles of a cache made, prefilled, continued, copied, classified against and closed leave
// the allocator's active bytes where they were, and no cache reaches the finalizer.
func TestPromptCacheNoLeaks(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	before := must(ingot.GetMemoryStats(ingot.CPU))
	for i := 0; i < 50; i++ {
		c := must(m.NewPromptCache())
		if err := c.Prefill(refSeq[:20]); err != nil {
			t.Fatal(err)
		}
		d := must(c.Copy())
		if _, err := d.Generate(context.Background(), refSeq[:22], greedy12()); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Classify([][]int32{refSeq[:25], refSeq[:21]}, [][]int32{{5}, {100}}, 0); err != nil {
			t.Fatal(err)
		}
		d.Close()
		c.Close()
	}
	after := must(ingot.GetMemoryStats(ingot.CPU))
	if after.Active != before.Active {
		t.Fatalf("active memory %d -> %d bytes", before.Active, after.Active)
	}
	if ingot.LeakedHandles() != 0 {
		t.Fatalf("%d handles reached the finalizer", ingot.LeakedHandles())
	}
}

// BenchmarkClassifyTextsOneByOne: texts classified one per call under a long instruction, with
// the template's prefix in a prompt cache and without (go test -bench OneByOne ./model).
func BenchmarkClassifyTextsOneByOne(b *testing.B) {
	m := loadFixture(b)
	defer m.Close()
	tmpl := strings.Repeat("Read the sentence and name its domain: science, sports or politics. ", 8) +
		"Sentence: {text}\nDomain:"
	labels := []string{" science", " sports", " politics"}
	texts := strings.Fields("protein election striker molecule parliament match")
	c := must(m.NewPromptCache())
	defer c.Close()
	if err := c.PrefillTemplate(tmpl); err != nil {
		b.Fatal(err)
	}
	for _, cached := range []bool{false, true} {
		name := "uncached"
		if cached {
			name = "cached"
		}
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				one := []string{texts[i%len(texts)]}
				var err error
				if cached {
					_, err = c.ClassifyTexts(tmpl, labels, one, 0)
				} else {
					_, err = m.ClassifyTexts(tmpl, labels, one, 0)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(must(c.Len())), "cached_ids")
		})
	}
}
