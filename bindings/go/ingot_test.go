package ingot

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
