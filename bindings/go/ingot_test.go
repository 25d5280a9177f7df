package ingot

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// must unwraps a result; an error panics, which fails the running test with a trace.
func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func fixture(t testing.TB) string {
	if d := os.Getenv("INGOT_FIXTURE"); d != "" {
		return d
	}
	return "../../tests/data/models/llama_bf16_tied"
}

func TestVersion(t *testing.T) {
	if LibraryABIVersion() != ABIVersion {
		t.Fatalf("ABI %d, bindings %d", LibraryABIVersion(), ABIVersion)
	}
	if !strings.Contains(Version(), ".") {
		t.Fatalf("version %q", Version())
	}
	if Float32.String() != "float32" || BFloat16.Size() != 2 {
		t.Fatal("dtype names/sizes")
	}
}

func TestArrayRoundTripAndOps(t *testing.T) {
	av := []float32{0.5, -1, 2, 3, 0.25, -2}
	bv := []float32{1, 2, -1, 0.5, 4, -3}
	a := must(FromFloat32(av, 2, 3))
	defer a.Free()
	b := must(FromFloat32(bv, 3, 2))
	defer b.Free()
	if s := a.Shape(); len(s) != 2 || s[0] != 2 || s[1] != 3 || a.Dtype() != Float32 || a.Size() != 6 {
		t.Fatalf("shape %v dtype %v", s, a.Dtype())
	}
	back := must(a.Float32s())
	for i := range av {
		if back[i] != av[i] {
			t.Fatalf("round trip %v", back)
		}
	}
	c := must(Matmul(a, b))
	defer c.Free()
	got := must(c.Float32s())
	for i := 0; i < 2; i++ {
		for j := 0; j < 2; j++ {
			want := 0.0
			for k := 0; k < 3; k++ {
				want += float64(av[i*3+k]) * float64(bv[k*2+j])
			}
			if math.Abs(float64(got[i*2+j])-want) > 1e-5 {
				t.Fatalf("matmul[%d,%d] = %v, want %v", i, j, got[i*2+j], want)
			}
		}
	}
	// sum over axis 1 and a chain of elementwise ops against loops
	s := must(Sum(a, false, 1))
	defer s.Free()
	sv := must(s.Float64s())
	if math.Abs(sv[0]-1.5) > 1e-6 || math.Abs(sv[1]-1.25) > 1e-6 {
		t.Fatalf("sum %v", sv)
	}
	e := must(Exp(a))
	defer e.Free()
	sg := must(Sigmoid(e))
	defer sg.Free()
	sgv := must(sg.Float64s())
	for i, x := range av {
		want := 1 / (1 + math.Exp(-math.Exp(float64(x))))
		if math.Abs(sgv[i]-want) > 1e-6 {
			t.Fatalf("sigmoid(exp) %v want %v", sgv[i], want)
		}
	}
	tk := must(TopK(a, 2, -1))
	defer tk.Free()
	tkv := must(tk.Float32s())
	if tkv[0] != 2 || tkv[1] != 0.5 || tkv[2] != 3 || tkv[3] != 0.25 {
		t.Fatalf("topk %v", tkv)
	}
	tr := must(Transpose(a))
	defer tr.Free()
	sl := must(Slice(tr, []int64{1, 0}, []int64{3, 2}, nil))
	defer sl.Free()
	slv := must(sl.Float32s())
	if len(slv) != 4 || slv[0] != -1 || slv[1] != 0.25 || slv[2] != 2 || slv[3] != -2 {
		t.Fatalf("slice of transpose %v", slv)
	}
	if err := Eval(c, s); err != nil {
		t.Fatal(err)
	}
}

func TestErrors(t *testing.T) {
	a := must(FromFloat32(make([]float32, 6), 2, 3))
	defer a.Free()
	b := must(FromFloat32(make([]float32, 4), 4))
	defer b.Free()
	_, err := Add(a, b)
	var ie *Error
	if !errors.As(err, &ie) || !errors.Is(err, ErrInvalidArgument) || !strings.HasPrefix(ie.Message, "[") {
		t.Fatalf("bad shapes: %v", err)
	}
	if _, err := Add(nil, a); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil handle: %v", err)
	}
	freed := must(FromFloat32([]float32{1}, 1))
	freed.Free()
	freed.Free() // twice is fine
	if _, err := Exp(freed); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("freed handle: %v", err)
	}
	if _, err := FromFloat32([]float32{1, 2}, 3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("count mismatch: %v", err)
	}
	if _, err := AsType(a, Dtype(99)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad dtype: %v", err)
	}
	if _, err := Reshape(a, 5); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad reshape: %v", err)
	}
	if _, err := LoadSafetensors("/nonexistent/file.safetensors"); !errors.Is(err, ErrIO) {
		t.Fatalf("missing file: %v", err)
	}
	if _, err := LoadModel("/nonexistent-model", ModelOptions{}); err == nil {
		t.Fatal("missing model loaded")
	}
	if _, err := ParseDevice("tpu"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad device: %v", err)
	}
}

func cubeSin(x []float64) float64 {
	s := 0.0
	for _, v := range x {
		s += v * v * v * math.Sin(v)
	}
	return s
}

func TestVJPThroughGoFunctionMatchesFiniteDifferences(t *testing.T) {
	f := must(NewClosure(func(in []*Array) ([]*Array, error) {
		sq, err := Square(in[0])
		if err != nil {
			return nil, err
		}
		defer sq.Free()
		cu, err := Mul(sq, in[0])
		if err != nil {
			return nil, err
		}
		defer cu.Free()
		s, err := Sin(in[0])
		if err != nil {
			return nil, err
		}
		defer s.Free()
		p, err := Mul(cu, s)
		if err != nil {
			return nil, err
		}
		defer p.Free()
		r, err := Sum(p, false)
		return []*Array{r}, err
	}))
	defer f.Free()
	xv := []float64{0.3, -1.2, 2.0, 0.7}
	x := must(FromFloat64(xv, 4))
	defer x.Free()
	one := must(Scalar(1, Float64))
	defer one.Free()
	outs, grads, err := VJP(f, []*Array{x}, []*Array{one})
	if err != nil {
		t.Fatal(err)
	}
	defer FreeAll(outs...)
	defer FreeAll(grads...)
	g := must(grads[0].Float64s())
	for i := range xv {
		xp, xm := append([]float64(nil), xv...), append([]float64(nil), xv...)
		xp[i] += 1e-6
		xm[i] -= 1e-6
		fd := (cubeSin(xp) - cubeSin(xm)) / 2e-6
		if math.Abs(g[i]-fd) > 1e-6*(1+math.Abs(fd)) {
			t.Fatalf("grad[%d] = %v, finite difference %v", i, g[i], fd)
		}
	}
	for _, mk := range []func(*Closure) (*Closure, error){Checkpoint, func(c *Closure) (*Closure, error) { return Compile(c, false) }} {
		h := must(mk(f))
		vo, vg, err := ValueAndGrad(h, []*Array{x})
		if err != nil {
			t.Fatal(err)
		}
		g2 := must(vg[0].Float64s())
		v := must(vo[0].Item())
		if math.Abs(v-cubeSin(xv)) > 1e-12 {
			t.Fatalf("value %v", v)
		}
		for i := range g {
			if math.Abs(g2[i]-g[i]) > 1e-12 {
				t.Fatalf("transformed grad %v vs %v", g2, g)
			}
		}
		FreeAll(vo...)
		FreeAll(vg...)
		h.Free()
	}
	// errors and panics inside the Go function come back as ErrCallback
	bad := must(NewClosure(func(in []*Array) ([]*Array, error) { return nil, errors.New("no thanks") }))
	defer bad.Free()
	if _, _, err := VJP(bad, []*Array{x}, []*Array{one}); !errors.Is(err, ErrCallback) || !strings.Contains(err.Error(), "no thanks") {
		t.Fatalf("callback error: %v", err)
	}
	panicky := must(NewClosure(func(in []*Array) ([]*Array, error) { panic("boom") }))
	defer panicky.Free()
	if _, err := panicky.Apply(x); !errors.Is(err, ErrCallback) || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("panic: %v", err)
	}
	// JVP with a one-hot tangent is one gradient entry
	tv := must(FromFloat64([]float64{0, 1, 0, 0}, 4))
	defer tv.Free()
	jo, jt, err := JVP(f, []*Array{x}, []*Array{tv})
	if err != nil {
		t.Fatal(err)
	}
	if j := must(jt[0].Item()); math.Abs(j-g[1]) > 1e-12 {
		t.Fatalf("jvp %v vs %v", j, g[1])
	}
	FreeAll(jo...)
	FreeAll(jt...)
}

func TestAdamWAndSafetensors(t *testing.T) {
	pv, gv := []float32{1, -2, 0.5}, []float32{0.1, -0.3, 2}
	p := must(FromFloat32(pv, 3))
	defer p.Free()
	g := must(FromFloat32(gv, 3))
	defer g.Free()
	opt := must(NewAdamW(0.01, 0.9, 0.999, 1e-8, 0.1))
	defer opt.Free()
	up := must(opt.Apply(map[string]*Array{"w": p}, map[string]*Array{"w": g}))
	defer FreeMap(up)
	got := must(up["w"].Float32s())
	for i := range pv {
		want := float64(pv[i])*(1-0.01*0.1) - 0.01*float64(gv[i])/(math.Abs(float64(gv[i]))+1e-8)
		if math.Abs(float64(got[i])-want) > 1e-6 {
			t.Fatalf("adamw %v want %v", got[i], want)
		}
	}
	if opt.Step() != 1 {
		t.Fatal("step")
	}
	path := filepath.Join(t.TempDir(), "w.safetensors")
	if err := SaveSafetensors(path, up); err != nil {
		t.Fatal(err)
	}
	back := must(LoadSafetensors(path))
	defer FreeMap(back)
	bv := must(back["w"].Float32s())
	for i := range got {
		if bv[i] != got[i] {
			t.Fatal("safetensors round trip")
		}
	}
	os.WriteFile(path, []byte("garbage!garbage!"), 0o644)
	if _, err := LoadSafetensors(path); !errors.Is(err, ErrFormat) {
		t.Fatalf("corrupt file: %v", err)
	}
}

func loadFixture(t testing.TB) *Model {
	return must(LoadModel(fixture(t), ModelOptions{Device: "cpu", Dtype: "float32"}))
}

func TestGenerateMatchesTransformersAndCancels(t *testing.T) {
	m := loadFixture(t)
	defer m.Close()
	if a := must(m.Architecture()); a != "llama" {
		t.Fatal(a)
	}
	prompt := []int32{1, 375, 288, 83}
	want := []int32{293, 152, 192, 186, 228, 108, 231, 228, 232, 215, 70, 205} // reference.json
	o := DefaultGenerateOptions()
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
	// a panicking callback stops generation and comes back as ErrCallback
	o.OnToken = func(int, int32) bool { panic("callback boom") }
	if _, err := m.Generate(context.Background(), prompt, o); !errors.Is(err, ErrCallback) || !strings.Contains(err.Error(), "callback boom") {
		t.Fatalf("panic in OnToken: %v", err)
	}
	// an already cancelled context generates nothing
	if _, err := m.Generate(ctx, prompt, o); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	// batch: row 0 equals the single greedy run
	o = DefaultGenerateOptions()
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
	if _, err := m.Generate(context.Background(), nil, o); !errors.Is(err, ErrInvalidArgument) {
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
	if _, err := m.ClassifyTexts("no placeholder", []string{"a", "b"}, []string{"x"}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("template error: %v", err)
	}
	if _, err := m.Classify([][]int32{{1, 99999}}, labels, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad ids: %v", err)
	}
	emb := must(m.Embed(prompts, PoolLast, 0))
	if e := must(m.HiddenSize()); len(emb[0]) != int(e) {
		t.Fatal("embed size")
	}
}

func TestTokenizer(t *testing.T) {
	tok := must(LoadTokenizer(fixture(t)))
	defer tok.Close()
	ids := must(tok.Encode("Hello, world!", true))
	want := []int32{1, 375, 288, 83, 16, 331, 293, 5} // Hugging Face tokenizers (reference.json)
	if len(ids) != len(want) {
		t.Fatalf("ids %v", ids)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("ids %v", ids)
		}
	}
	text := must(tok.Decode(ids, true))
	if text != "Hello, world!" {
		t.Fatalf("decode %q", text)
	}
	d := must(tok.NewStreamDecoder(true))
	defer d.Close()
	var sb strings.Builder
	for _, id := range ids {
		sb.WriteString(must(d.Step(id)))
	}
	sb.WriteString(must(d.Finish()))
	if sb.String() != text {
		t.Fatalf("stream %q", sb.String())
	}
	if _, err := tok.TokenToID("definitely-not-a-token"); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("unknown token: %v", err)
	}
	var nilTok *Tokenizer
	if _, err := nilTok.Encode("x", true); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil tokenizer: %v", err)
	}
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
	if err := ClearCache(CPU); err != nil {
		t.Fatal(err)
	}
	before := must(GetMemoryStats(CPU))
	var rss10 int64
	tokens := 0
	for i := 0; i < 100; i++ {
		m := loadFixture(t)
		o := DefaultGenerateOptions()
		o.MaxTokens = 100
		o.StopAtEOS = false
		tokens += len(must(m.Generate(context.Background(), []int32{1, 375, 288, 83}, o)).Tokens)
		m.Close()
		if i == 9 {
			rss10 = rssKB()
		}
	}
	after := must(GetMemoryStats(CPU))
	if tokens != 10000 {
		t.Fatalf("%d tokens", tokens)
	}
	if after.Active != before.Active {
		t.Fatalf("active memory %d -> %d bytes", before.Active, after.Active)
	}
	if grow := rssKB() - rss10; grow > 4096 {
		t.Fatalf("RSS grew by %d kB between cycle 10 and 100", grow)
	}
	if LeakedHandles() != 0 {
		t.Fatalf("%d handles reached the finalizer", LeakedHandles())
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
