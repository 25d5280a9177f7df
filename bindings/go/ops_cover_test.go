package ingot

// Coverage of the root package's creation, elementwise, reduction, shape/indexing, random, fast
// and device/memory functions: each against a float64 reference computed here with plain loops,
// plus an error path per family (nil or freed inputs, bad shapes or axes).

import (
	"errors"
	"math"
	"runtime"
	"sort"
	"syscall"
	"testing"
	"unsafe"
)

// arena frees every array it was handed when the test ends.
type arena struct {
	t    *testing.T
	arrs []*Array
}

func newArena(t *testing.T) *arena {
	ar := &arena{t: t}
	t.Cleanup(func() { FreeAll(ar.arrs...) })
	return ar
}

// k keeps a result (failing the test on error).
func (ar *arena) k(a *Array, err error) *Array {
	ar.t.Helper()
	if err != nil {
		ar.t.Fatalf("unexpected error: %v", err)
	}
	ar.arrs = append(ar.arrs, a)
	return a
}

func (ar *arena) f32(v []float32, shape ...int64) *Array { return ar.k(FromFloat32(v, shape...)) }

// vals evaluates a as float64.
func (ar *arena) vals(a *Array) []float64 {
	ar.t.Helper()
	v, err := a.Float64s()
	if err != nil {
		ar.t.Fatalf("read: %v", err)
	}
	return v
}

func sameShape(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checkClose compares got with want elementwise: |got-want| <= tol*(1+|want|).
func checkClose(t *testing.T, name string, got, want []float64, tol float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d values, want %d", name, len(got), len(want))
	}
	for i := range want {
		if math.IsNaN(got[i]) || math.Abs(got[i]-want[i]) > tol*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %v, want %v (all: %v)", name, i, got[i], want[i], got)
		}
	}
}

// float32 results of float32 inputs: a few ulps of rounding per op.
const tolF32 = 2e-6 * 8

var xv = []float32{-1.5, -0.3, 0.2, 0.9, 2.0, 3.1}

func widen(v []float32) []float64 {
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = float64(x)
	}
	return out
}

func TestCoverCreation(t *testing.T) {
	ar := newArena(t)
	z := ar.k(Zeros(Float32, 2, 3))
	o := ar.k(Ones(Float64, 4))
	f := ar.k(Full(2.5, Float32, 3, 1))
	r := ar.k(Arange(1, 2.2, 0.25, Float32))
	if !sameShape(z.Shape(), []int64{2, 3}) || z.Dtype() != Float32 || z.Ndim() != 2 {
		t.Fatalf("zeros %v %v", z.Shape(), z.Dtype())
	}
	checkClose(t, "zeros", ar.vals(z), make([]float64, 6), 0)
	checkClose(t, "ones", ar.vals(o), []float64{1, 1, 1, 1}, 0)
	if o.Dtype() != Float64 || f.Ndim() != 2 {
		t.Fatal("ones dtype / full ndim")
	}
	checkClose(t, "full", ar.vals(f), []float64{2.5, 2.5, 2.5}, 0)
	var want []float64
	for x := 1.0; x < 2.2; x += 0.25 {
		want = append(want, x)
	}
	checkClose(t, "arange", ar.vals(r), want, 0)
	s := ar.k(Scalar(3, Int32))
	if s.Ndim() != 0 || s.Size() != 1 {
		t.Fatalf("scalar ndim %d", s.Ndim())
	}
	// int64 and int32 round trips, and the conversions of Int32s/Int64s
	iv := []int64{-3, 0, 7, 1 << 40}
	ia := ar.k(FromInt64(iv, 2, 2))
	if ia.Dtype() != Int64 {
		t.Fatalf("dtype %v", ia.Dtype())
	}
	back := must(ia.Int64s())
	for i := range iv {
		if back[i] != iv[i] {
			t.Fatalf("int64 round trip %v", back)
		}
	}
	small := ar.k(FromInt64([]int64{-3, 0, 7, 9}, 4))
	i32 := must(small.Int32s())
	if i32[0] != -3 || i32[1] != 0 || i32[2] != 7 || i32[3] != 9 {
		t.Fatalf("Int32s %v", i32)
	}
	fl := ar.f32([]float32{1, -2, 5}, 3)
	i64 := must(fl.Int64s())
	if i64[0] != 1 || i64[1] != -2 || i64[2] != 5 {
		t.Fatalf("Int64s of float %v", i64)
	}
	// errors
	if _, err := FromInt64([]int64{1, 2, 3}, 2, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("FromInt64 count: %v", err)
	}
	if _, err := Zeros(Dtype(42), 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Zeros bad dtype: %v", err)
	}
	if _, err := Ones(Float32, -1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Ones negative dim: %v", err)
	}
	if _, err := Full(1, Dtype(-3), 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Full bad dtype: %v", err)
	}
	if _, err := Arange(0, 1, 0, Float32); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Arange zero step: %v", err)
	}
	freed := must(FromInt64([]int64{1}, 1))
	freed.Free()
	if _, err := freed.Int64s(); err == nil {
		t.Fatal("Int64s of a freed array")
	}
	if _, err := freed.Int32s(); err == nil {
		t.Fatal("Int32s of a freed array")
	}
	if freed.Ndim() != 0 {
		t.Fatal("Ndim of a freed array")
	}
}

func TestCoverUnary(t *testing.T) {
	ar := newArena(t)
	pos := []float32{0.25, 0.5, 1, 2, 4.5, 9}
	cases := []struct {
		name string
		fn   func(*Array) (*Array, error)
		in   []float32
		ref  func(float64) float64
	}{
		{"Negative", Negative, xv, func(x float64) float64 { return -x }},
		{"SiLU", SiLU, xv, func(x float64) float64 { return x / (1 + math.Exp(-x)) }},
		{"GELU", GELU, xv, func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }},
		{"Tanh", Tanh, xv, math.Tanh},
		{"Cos", Cos, xv, math.Cos},
		{"Sqrt", Sqrt, pos, math.Sqrt},
		{"Rsqrt", Rsqrt, pos, func(x float64) float64 { return 1 / math.Sqrt(x) }},
		{"Reciprocal", Reciprocal, xv, func(x float64) float64 { return 1 / x }},
		{"StopGradient", StopGradient, xv, func(x float64) float64 { return x }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := ar.f32(c.in, 2, 3)
			out := ar.k(c.fn(a))
			if !sameShape(out.Shape(), []int64{2, 3}) || out.Dtype() != Float32 {
				t.Fatalf("shape %v dtype %v", out.Shape(), out.Dtype())
			}
			want := make([]float64, len(c.in))
			for i, x := range c.in {
				want[i] = c.ref(float64(x))
			}
			checkClose(t, c.name, ar.vals(out), want, tolF32)
			// float64 inputs: float64 accuracy
			a64 := ar.k(FromFloat64(widen(c.in), 6))
			checkClose(t, c.name+"/f64", ar.vals(ar.k(c.fn(a64))), want, 1e-12)
			// error paths: nil and freed inputs
			if _, err := c.fn(nil); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("nil input: %v", err)
			}
			freed := must(FromFloat32([]float32{1}, 1))
			freed.Free()
			if _, err := c.fn(freed); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("freed input: %v", err)
			}
		})
	}
}

func TestCoverBinary(t *testing.T) {
	ar := newArena(t)
	av := []float32{0.5, 1.5, 2, 3, 0.25, 4}
	bv := []float32{2, 1.5, 0.5} // broadcast over rows
	b2 := func(x bool) float64 {
		if x {
			return 1
		}
		return 0
	}
	cases := []struct {
		name string
		fn   func(a, b *Array) (*Array, error)
		ref  func(x, y float64) float64
		dt   Dtype
	}{
		{"Subtract", Subtract, func(x, y float64) float64 { return x - y }, Float32},
		{"Divide", Divide, func(x, y float64) float64 { return x / y }, Float32},
		{"Power", Power, math.Pow, Float32},
		{"Maximum", Maximum, math.Max, Float32},
		{"Minimum", Minimum, math.Min, Float32},
		{"Equal", Equal, func(x, y float64) float64 { return b2(x == y) }, Bool},
		{"Less", Less, func(x, y float64) float64 { return b2(x < y) }, Bool},
		{"Greater", Greater, func(x, y float64) float64 { return b2(x > y) }, Bool},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a := ar.f32(av, 2, 3)
			b := ar.f32(bv, 3)
			out := ar.k(c.fn(a, b))
			if !sameShape(out.Shape(), []int64{2, 3}) || out.Dtype() != c.dt {
				t.Fatalf("shape %v dtype %v", out.Shape(), out.Dtype())
			}
			want := make([]float64, 6)
			for i := 0; i < 2; i++ {
				for j := 0; j < 3; j++ {
					want[i*3+j] = c.ref(float64(av[i*3+j]), float64(bv[j]))
				}
			}
			checkClose(t, c.name, ar.vals(out), want, tolF32)
			// error paths: incompatible shapes, nil operand, freed operand
			bad := ar.f32([]float32{1, 2}, 2)
			if _, err := c.fn(a, bad); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("bad shapes: %v", err)
			}
			if _, err := c.fn(a, nil); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("nil operand: %v", err)
			}
			freed := must(FromFloat32([]float32{1}, 1))
			freed.Free()
			if _, err := c.fn(freed, a); !errors.Is(err, ErrInvalidArgument) {
				t.Fatalf("freed operand: %v", err)
			}
		})
	}
	// Where: cond ? a : b with a broadcast scalar
	a := ar.f32(av, 2, 3)
	cond := ar.k(Greater(a, ar.k(Scalar(1, Float32))))
	w := ar.k(Where(cond, a, ar.k(Scalar(-7, Float32))))
	want := make([]float64, 6)
	for i, x := range av {
		want[i] = -7
		if x > 1 {
			want[i] = float64(x)
		}
	}
	checkClose(t, "Where", ar.vals(w), want, 0)
	if _, err := Where(cond, a, ar.f32([]float32{1, 2}, 2)); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Where bad shapes: %v", err)
	}
	if _, err := Where(nil, a, a); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Where nil cond: %v", err)
	}
}

func TestCoverReductions(t *testing.T) {
	ar := newArena(t)
	a := ar.f32(xv, 2, 3)
	x := widen(xv)
	// Mean over axis 1 and over everything
	m := ar.k(Mean(a, false, 1))
	checkClose(t, "Mean axis 1", ar.vals(m), []float64{(x[0] + x[1] + x[2]) / 3, (x[3] + x[4] + x[5]) / 3}, tolF32)
	mk := ar.k(Mean(a, true, 0))
	if !sameShape(mk.Shape(), []int64{1, 3}) {
		t.Fatalf("Mean keepdims shape %v", mk.Shape())
	}
	checkClose(t, "Mean axis 0", ar.vals(mk), []float64{(x[0] + x[3]) / 2, (x[1] + x[4]) / 2, (x[2] + x[5]) / 2}, tolF32)
	all := ar.k(Mean(a, false))
	tot := 0.0
	for _, v := range x {
		tot += v
	}
	checkClose(t, "Mean all", ar.vals(all), []float64{tot / 6}, tolF32)
	// LogSumExp and Softmax over the last axis
	lse := ar.k(LogSumExp(a, false, -1))
	sm := ar.k(Softmax(a))
	var wantL, wantS []float64
	for i := 0; i < 2; i++ {
		s := 0.0
		for j := 0; j < 3; j++ {
			s += math.Exp(x[i*3+j])
		}
		wantL = append(wantL, math.Log(s))
		for j := 0; j < 3; j++ {
			wantS = append(wantS, math.Exp(x[i*3+j])/s)
		}
	}
	checkClose(t, "LogSumExp", ar.vals(lse), wantL, tolF32)
	checkClose(t, "Softmax", ar.vals(sm), wantS, tolF32)
	lseAll := ar.k(LogSumExp(a, true))
	if !sameShape(lseAll.Shape(), []int64{1, 1}) {
		t.Fatalf("LogSumExp keepdims %v", lseAll.Shape())
	}
	s := 0.0
	for _, v := range x {
		s += math.Exp(v)
	}
	checkClose(t, "LogSumExp all", ar.vals(lseAll), []float64{math.Log(s)}, tolF32)
	sm0 := ar.k(Softmax(a, 0))
	var wantS0 []float64
	for i := 0; i < 2; i++ {
		for j := 0; j < 3; j++ {
			wantS0 = append(wantS0, math.Exp(x[i*3+j])/(math.Exp(x[j])+math.Exp(x[3+j])))
		}
	}
	checkClose(t, "Softmax axis 0", ar.vals(sm0), wantS0, tolF32)
	// Argmax (first maximum) and TopKIndices
	tv := []float32{3, 9, 9, 1, 4, -2, 8, 0}
	tarr := ar.f32(tv, 2, 4)
	am := ar.k(Argmax(tarr, 1, false))
	amv := must(am.Int64s())
	if len(amv) != 2 || amv[0] != 1 || amv[1] != 2 {
		t.Fatalf("Argmax %v", amv)
	}
	amk := ar.k(Argmax(tarr, 0, true))
	if !sameShape(amk.Shape(), []int64{1, 4}) {
		t.Fatalf("Argmax keepdims %v", amk.Shape())
	}
	amkv := must(amk.Int64s())
	for j := 0; j < 4; j++ {
		want := int64(0)
		if tv[4+j] > tv[j] {
			want = 1
		}
		if amkv[j] != want {
			t.Fatalf("Argmax axis 0 %v", amkv)
		}
	}
	tk := ar.k(TopKIndices(tarr, 2, -1))
	if !sameShape(tk.Shape(), []int64{2, 2}) {
		t.Fatalf("TopKIndices shape %v", tk.Shape())
	}
	tkv := must(tk.Int64s())
	for i := 0; i < 2; i++ {
		row := []int{0, 1, 2, 3}
		sort.SliceStable(row, func(p, q int) bool { return tv[i*4+row[p]] > tv[i*4+row[q]] })
		// the set of the two largest (values distinct within each row's top 2 except row 0's tie)
		got := []int{int(tkv[i*2]), int(tkv[i*2+1])}
		sort.Ints(got)
		want := []int{row[0], row[1]}
		sort.Ints(want)
		if got[0] != want[0] || got[1] != want[1] {
			t.Fatalf("TopKIndices row %d: %v want %v", i, got, want)
		}
	}
	// errors: bad axes, k out of range, nil input
	if _, err := Mean(a, false, 5); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Mean bad axis: %v", err)
	}
	if _, err := LogSumExp(a, false, -3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("LogSumExp bad axis: %v", err)
	}
	if _, err := Softmax(a, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Softmax bad axis: %v", err)
	}
	if _, err := Argmax(a, 2, false); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Argmax bad axis: %v", err)
	}
	if _, err := TopKIndices(a, 4, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("TopKIndices k > dim: %v", err)
	}
	for name, fn := range map[string]func(*Array) (*Array, error){
		"Mean":        func(a *Array) (*Array, error) { return Mean(a, false) },
		"LogSumExp":   func(a *Array) (*Array, error) { return LogSumExp(a, false) },
		"Softmax":     func(a *Array) (*Array, error) { return Softmax(a) },
		"Argmax":      func(a *Array) (*Array, error) { return Argmax(a, 0, false) },
		"TopKIndices": func(a *Array) (*Array, error) { return TopKIndices(a, 1, 0) },
	} {
		if _, err := fn(nil); !errors.Is(err, ErrInvalidArgument) {
			t.Fatalf("%s nil input: %v", name, err)
		}
	}
}

func TestCoverShapeAndIndexing(t *testing.T) {
	ar := newArena(t)
	a := ar.f32(xv, 2, 3)
	x := widen(xv)
	// ExpandDims / Squeeze
	e := ar.k(ExpandDims(a, 0, 3))
	if !sameShape(e.Shape(), []int64{1, 2, 3, 1}) || e.Ndim() != 4 {
		t.Fatalf("ExpandDims %v", e.Shape())
	}
	sq := ar.k(Squeeze(e))
	if !sameShape(sq.Shape(), []int64{2, 3}) {
		t.Fatalf("Squeeze all %v", sq.Shape())
	}
	sq1 := ar.k(Squeeze(e, 3))
	if !sameShape(sq1.Shape(), []int64{1, 2, 3}) {
		t.Fatalf("Squeeze axis %v", sq1.Shape())
	}
	checkClose(t, "Squeeze", ar.vals(sq), x, 0)
	// BroadcastTo
	row := ar.f32([]float32{1, 2, 3}, 3)
	bc := ar.k(BroadcastTo(row, 2, 3))
	checkClose(t, "BroadcastTo", ar.vals(bc), []float64{1, 2, 3, 1, 2, 3}, 0)
	// Concatenate and Stack
	b := ar.f32([]float32{7, 8, 9}, 1, 3)
	cat := ar.k(Concatenate([]*Array{a, b}, 0))
	if !sameShape(cat.Shape(), []int64{3, 3}) {
		t.Fatalf("Concatenate %v", cat.Shape())
	}
	checkClose(t, "Concatenate", ar.vals(cat), append(append([]float64(nil), x...), 7, 8, 9), 0)
	cat1 := ar.k(Concatenate([]*Array{a, a}, 1))
	var want1 []float64
	for i := 0; i < 2; i++ {
		want1 = append(want1, x[i*3:i*3+3]...)
		want1 = append(want1, x[i*3:i*3+3]...)
	}
	checkClose(t, "Concatenate axis 1", ar.vals(cat1), want1, 0)
	st := ar.k(Stack([]*Array{a, a}, 2))
	if !sameShape(st.Shape(), []int64{2, 3, 2}) {
		t.Fatalf("Stack %v", st.Shape())
	}
	var wantSt []float64
	for _, v := range x {
		wantSt = append(wantSt, v, v)
	}
	checkClose(t, "Stack", ar.vals(st), wantSt, 0)
	// SliceUpdate: a[:, 1:3] = [[10, 11]] (broadcast over rows)
	up := ar.f32([]float32{10, 11}, 1, 2)
	su := ar.k(SliceUpdate(a, up, []int64{0, 1}, []int64{2, 3}, nil))
	checkClose(t, "SliceUpdate", ar.vals(su), []float64{x[0], 10, 11, x[3], 10, 11}, 0)
	su2 := ar.k(SliceUpdate(a, ar.f32([]float32{-1, -2}, 2, 1), []int64{0, 0}, []int64{2, 3}, []int64{1, 2}))
	checkClose(t, "SliceUpdate strided", ar.vals(su2), []float64{-1, x[1], -1, -2, x[4], -2}, 0)
	// Take along axis 1 and flattened-free Take on axis 0
	idx := ar.k(FromInt32([]int32{2, 0, 2}, 3))
	tk := ar.k(Take(a, idx, 1))
	if !sameShape(tk.Shape(), []int64{2, 3}) {
		t.Fatalf("Take %v", tk.Shape())
	}
	checkClose(t, "Take", ar.vals(tk), []float64{x[2], x[0], x[2], x[5], x[3], x[5]}, 0)
	tk0 := ar.k(Take(a, ar.k(FromInt32([]int32{1}, 1)), 0))
	checkClose(t, "Take axis 0", ar.vals(tk0), x[3:6], 0)
	// TakeAlongAxis / PutAlongAxis with per-row indices
	ia := ar.k(FromInt32([]int32{1, 2, 0, 0}, 2, 2))
	ta := ar.k(TakeAlongAxis(a, ia, 1))
	checkClose(t, "TakeAlongAxis", ar.vals(ta), []float64{x[1], x[2], x[3], x[3]}, 0)
	pv := ar.f32([]float32{100, 200}, 2, 1)
	pi := ar.k(FromInt32([]int32{2, 1}, 2, 1))
	pa := ar.k(PutAlongAxis(a, pi, pv, 1))
	checkClose(t, "PutAlongAxis", ar.vals(pa), []float64{x[0], x[1], 100, x[3], 200, x[5]}, 0)
	// errors
	if _, err := Squeeze(a, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Squeeze non-1 axis: %v", err)
	}
	if _, err := ExpandDims(a, 7); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ExpandDims bad axis: %v", err)
	}
	if _, err := BroadcastTo(a, 4, 3); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("BroadcastTo bad shape: %v", err)
	}
	if _, err := Concatenate([]*Array{a, row}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Concatenate bad shapes: %v", err)
	}
	if _, err := Concatenate([]*Array{a, nil}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Concatenate nil: %v", err)
	}
	if _, err := Concatenate(nil, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Concatenate empty: %v", err)
	}
	if _, err := Stack([]*Array{a, b}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Stack bad shapes: %v", err)
	}
	if _, err := SliceUpdate(a, ar.f32([]float32{1, 2, 3}, 3), []int64{0, 1}, []int64{2, 3}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SliceUpdate bad update: %v", err)
	}
	if _, err := SliceUpdate(a, up, []int64{0}, []int64{2, 3}, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SliceUpdate lengths: %v", err)
	}
	if _, err := Take(a, nil, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Take nil indices: %v", err)
	}
	if _, err := Take(a, idx, 4); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Take bad axis: %v", err)
	}
	if _, err := TakeAlongAxis(a, ar.k(FromInt32([]int32{0, 1}, 2)), 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("TakeAlongAxis ndim mismatch: %v", err)
	}
	if _, err := PutAlongAxis(a, pi, nil, 1); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("PutAlongAxis nil values: %v", err)
	}
	freed := must(FromFloat32([]float32{1}, 1))
	freed.Free()
	if _, err := ExpandDims(freed, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ExpandDims freed: %v", err)
	}
	if _, err := Squeeze(freed); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Squeeze freed: %v", err)
	}
	if _, err := BroadcastTo(nil, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("BroadcastTo nil: %v", err)
	}
	if _, err := Stack([]*Array{freed}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Stack freed: %v", err)
	}
}

func TestCoverRandom(t *testing.T) {
	ar := newArena(t)
	// the global key: the same seed gives the same samples
	must(0, RandomSeed(1234))
	n1 := ar.vals(ar.k(RandomNormal([]int64{16}, Float32, 0, 1, nil)))
	must(0, RandomSeed(1234))
	n2 := ar.vals(ar.k(RandomNormal([]int64{16}, Float32, 0, 1, nil)))
	checkClose(t, "reseeded normal", n2, n1, 0)
	n3 := ar.vals(ar.k(RandomNormal([]int64{16}, Float32, 0, 1, nil)))
	same := true
	for i := range n1 {
		same = same && n1[i] == n3[i]
	}
	if same {
		t.Fatal("the global key did not advance")
	}
	// explicit keys: deterministic; split keys differ from each other
	k1, k2 := ar.k(RandomKey(7)), ar.k(RandomKey(7))
	u1 := ar.vals(ar.k(RandomUniform([]int64{8}, Float32, 0, 1, k1)))
	u2 := ar.vals(ar.k(RandomUniform([]int64{8}, Float32, 0, 1, k2)))
	checkClose(t, "same key", u2, u1, 0)
	sp := ar.k(RandomSplit(k1, 3))
	if !sameShape(sp.Shape(), []int64{3, 2}) {
		t.Fatalf("RandomSplit shape %v", sp.Shape())
	}
	keys := must(sp.Int64s())
	for i := 0; i < 3; i++ {
		for j := i + 1; j < 3; j++ {
			if keys[2*i] == keys[2*j] && keys[2*i+1] == keys[2*j+1] {
				t.Fatalf("split keys %d and %d equal: %v", i, j, keys)
			}
		}
	}
	sub0 := ar.k(Reshape(ar.k(Slice(sp, []int64{0, 0}, []int64{1, 2}, nil)), 2))
	sub1 := ar.k(Reshape(ar.k(Slice(sp, []int64{1, 0}, []int64{2, 2}, nil)), 2))
	s0 := ar.vals(ar.k(RandomUniform([]int64{8}, Float32, 0, 1, sub0)))
	s1 := ar.vals(ar.k(RandomUniform([]int64{8}, Float32, 0, 1, sub1)))
	diff := 0
	for i := range s0 {
		if s0[i] != s1[i] {
			diff++
		}
	}
	if diff < 6 {
		t.Fatalf("samples of split keys agree in %d of 8", 8-diff)
	}
	// shapes, ranges and moments (n = 8192: 5-sigma bounds)
	const n = 8192
	u := ar.k(RandomUniform([]int64{64, n / 64}, Float32, -2, 3, ar.k(RandomKey(11))))
	if !sameShape(u.Shape(), []int64{64, n / 64}) || u.Dtype() != Float32 {
		t.Fatalf("uniform %v %v", u.Shape(), u.Dtype())
	}
	mean := 0.0
	for _, v := range ar.vals(u) {
		if v < -2 || v >= 3 {
			t.Fatalf("uniform sample %v outside [-2, 3)", v)
		}
		mean += v / n
	}
	if sd := 5 / math.Sqrt(12*n); math.Abs(mean-0.5) > 5*sd {
		t.Fatalf("uniform mean %v", mean)
	}
	g := ar.k(RandomNormal([]int64{n}, Float64, 3, 0.5, ar.k(RandomKey(12))))
	if g.Dtype() != Float64 || g.Size() != n {
		t.Fatalf("normal %v %v", g.Shape(), g.Dtype())
	}
	gv := ar.vals(g)
	m, v := 0.0, 0.0
	for _, x := range gv {
		m += x / n
	}
	for _, x := range gv {
		v += (x - m) * (x - m) / (n - 1)
	}
	if math.Abs(m-3) > 5*0.5/math.Sqrt(n) || math.Abs(math.Sqrt(v)-0.5) > 5*0.5/math.Sqrt(2*n) {
		t.Fatalf("normal mean %v std %v", m, math.Sqrt(v))
	}
	// errors
	if _, err := RandomSplit(nil, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomSplit nil key: %v", err)
	}
	if _, err := RandomSplit(k1, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomSplit num 0: %v", err)
	}
	if _, err := RandomNormal([]int64{2}, Dtype(77), 0, 1, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomNormal bad dtype: %v", err)
	}
	if _, err := RandomUniform([]int64{-2}, Float32, 0, 1, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomUniform negative dim: %v", err)
	}
	freed := must(RandomKey(1))
	freed.Free()
	if _, err := RandomUniform([]int64{2}, Float32, 0, 1, freed); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomUniform freed key: %v", err)
	}
	if _, err := RandomNormal([]int64{2}, Float32, 0, 1, freed); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomNormal freed key: %v", err)
	}
	if _, err := RandomSplit(freed, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RandomSplit freed key: %v", err)
	}
}

func TestCoverFastOps(t *testing.T) {
	ar := newArena(t)
	// x [2, 4] with weight and bias
	xs := []float64{0.5, -1, 2, 0.25, 3, 1, -0.5, -2}
	ws := []float64{1, 0.5, -1, 2}
	bs := []float64{0.1, 0, -0.2, 0.3}
	x := ar.k(FromFloat64(xs, 2, 4))
	w := ar.k(FromFloat64(ws, 4))
	b := ar.k(FromFloat64(bs, 4))
	const eps = 1e-5
	var wantRMS, wantRMSNoW, wantLN []float64
	for i := 0; i < 2; i++ {
		r := xs[i*4 : i*4+4]
		ms, mu := 0.0, 0.0
		for _, v := range r {
			ms += v * v / 4
			mu += v / 4
		}
		va := 0.0
		for _, v := range r {
			va += (v - mu) * (v - mu) / 4
		}
		for j, v := range r {
			wantRMS = append(wantRMS, v/math.Sqrt(ms+eps)*ws[j])
			wantRMSNoW = append(wantRMSNoW, v/math.Sqrt(ms+eps))
			wantLN = append(wantLN, (v-mu)/math.Sqrt(va+eps)*ws[j]+bs[j])
		}
	}
	// eps is a float32 in the API: 1e-5 is not exact, hence 1e-9 rather than 1e-12
	checkClose(t, "RMSNorm", ar.vals(ar.k(RMSNorm(x, w, eps))), wantRMS, 1e-9)
	checkClose(t, "RMSNorm no weight", ar.vals(ar.k(RMSNorm(x, nil, eps))), wantRMSNoW, 1e-9)
	checkClose(t, "LayerNorm", ar.vals(ar.k(LayerNorm(x, w, b, eps))), wantLN, 1e-9)
	x32 := ar.k(AsType(x, Float32))
	w32 := ar.k(AsType(w, Float32))
	checkClose(t, "RMSNorm f32", ar.vals(ar.k(RMSNorm(x32, w32, eps))), wantRMS, 1e-5)
	var wantLNNo []float64
	for i := 0; i < 2; i++ {
		for j := 0; j < 4; j++ {
			wantLNNo = append(wantLNNo, (wantLN[i*4+j]-bs[j])/ws[j])
		}
	}
	checkClose(t, "LayerNorm no affine", ar.vals(ar.k(LayerNorm(x, nil, nil, eps))), wantLNNo, 1e-9)

	// RoPE on [1, L=3, D=6], dims 4 rotated (the last 2 pass through), offset 2, scale 0.5
	const L, D, dims = 3, 6, 4
	rv := make([]float64, L*D)
	for i := range rv {
		rv[i] = math.Sin(float64(i)*0.7) + 0.1*float64(i)
	}
	rx := ar.k(FromFloat64(rv, 1, L, D))
	for _, trad := range []bool{false, true} {
		const base, scale, offset = 10000.0, 0.5, 2
		want := append([]float64(nil), rv...)
		for l := 0; l < L; l++ {
			pos := float64(offset+l) * scale
			for i := 0; i < dims/2; i++ {
				th := pos * math.Pow(base, -2*float64(i)/dims)
				c, s := math.Cos(th), math.Sin(th)
				p, q := i, i+dims/2 // rotate_half pairs
				if trad {
					p, q = 2*i, 2*i+1 // interleaved pairs
				}
				x1, x2 := rv[l*D+p], rv[l*D+q]
				want[l*D+p] = x1*c - x2*s
				want[l*D+q] = x2*c + x1*s
			}
		}
		got := ar.vals(ar.k(RoPE(rx, dims, trad, base, scale, offset)))
		checkClose(t, "RoPE", got, want, 1e-6)
	}

	// SDPA: q [1,1,2,4], k/v [1,1,3,4], causal (bottom-right aligned, as for decoding) and masked
	qv := []float64{0.1, -0.2, 0.3, 0.5, 1, 0.4, -0.6, 0.2}
	kv := []float64{0.3, 0.1, -0.4, 0.2, -1, 0.5, 0.7, 0.1, 0.2, 0.2, 0.2, -0.3}
	vv := []float64{1, 2, 3, 4, -1, 0, 1, 0.5, 0.25, -2, 0.5, 1}
	q := ar.k(FromFloat64(qv, 1, 1, 2, 4))
	kk := ar.k(FromFloat64(kv, 1, 1, 3, 4))
	v := ar.k(FromFloat64(vv, 1, 1, 3, 4))
	const sc = 0.5
	attn := func(allowed func(i, j int) bool) []float64 {
		var out []float64
		for i := 0; i < 2; i++ {
			var w []float64
			mx := math.Inf(-1)
			for j := 0; j < 3; j++ {
				s := math.Inf(-1)
				if allowed(i, j) {
					s = 0
					for d := 0; d < 4; d++ {
						s += qv[i*4+d] * kv[j*4+d]
					}
					s *= sc
				}
				w = append(w, s)
				mx = math.Max(mx, s)
			}
			z := 0.0
			for j := range w {
				w[j] = math.Exp(w[j] - mx)
				z += w[j]
			}
			for d := 0; d < 4; d++ {
				o := 0.0
				for j := range w {
					o += w[j] / z * vv[j*4+d]
				}
				out = append(out, o)
			}
		}
		return out
	}
	all := func(i, j int) bool { return true }
	checkClose(t, "SDPA", ar.vals(ar.k(SDPA(q, kk, v, sc, false, nil))), attn(all), 1e-7)
	causal := func(i, j int) bool { return j <= i+1 } // key length 3, query length 2
	checkClose(t, "SDPA causal", ar.vals(ar.k(SDPA(q, kk, v, sc, true, nil))), attn(causal), 1e-7)
	keep := []bool{true, false, true, false, true, true}
	mb := make([]float32, 6)
	for i, k := range keep {
		if !k {
			mb[i] = float32(math.Inf(-1))
		}
	}
	mask := ar.k(FromFloat32(mb, 2, 3))
	mask64 := ar.k(AsType(mask, Float64))
	checkClose(t, "SDPA mask", ar.vals(ar.k(SDPA(q, kk, v, sc, false, mask64))), attn(func(i, j int) bool { return keep[i*3+j] }), 1e-7)

	// errors
	if _, err := RMSNorm(nil, w, eps); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RMSNorm nil x: %v", err)
	}
	if _, err := RMSNorm(x, ar.k(FromFloat64([]float64{1, 2, 3}, 3)), eps); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RMSNorm weight size: %v", err)
	}
	if _, err := LayerNorm(x, w, ar.k(FromFloat64([]float64{1, 2}, 2)), eps); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("LayerNorm bias size: %v", err)
	}
	if _, err := RoPE(rx, 7, false, 10000, 1, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RoPE odd dims: %v", err)
	}
	if _, err := RoPE(nil, 4, false, 10000, 1, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RoPE nil: %v", err)
	}
	if _, err := SDPA(q, kk, ar.k(FromFloat64(make([]float64, 8), 1, 1, 2, 4)), sc, false, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SDPA k/v length mismatch: %v", err)
	}
	if _, err := SDPA(q, nil, v, sc, false, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SDPA nil k: %v", err)
	}
	// a freed array for an optional input is an error, not "none"
	gone := must(FromFloat64([]float64{1, 1, 1, 1}, 4))
	gone.Free()
	if _, err := RMSNorm(x, gone, eps); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("RMSNorm freed weight: %v", err)
	}
	if _, err := LayerNorm(x, w, gone, eps); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("LayerNorm freed bias: %v", err)
	}
	if _, err := SDPA(q, kk, v, sc, false, gone); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SDPA freed mask: %v", err)
	}
}

func TestCoverDevicesAndMemory(t *testing.T) {
	ar := newArena(t)
	if d := CUDA(1); d.Type != 1 || d.Index != 1 || d.String() != "cuda:1" {
		t.Fatalf("CUDA(1) = %+v %q", d, d.String())
	}
	if n, err := DeviceCount(0); err != nil || n != 1 {
		t.Fatalf("CPU count %d %v", n, err)
	}
	ncuda, err := DeviceCount(1)
	if err != nil || ncuda < 0 {
		t.Fatalf("CUDA count %d %v", ncuda, err)
	}
	if _, err := DeviceCount(9); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad device type: %v", err)
	}
	// default device round trip, restoring the previous default
	prev, err := DefaultDevice()
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := SetDefaultDevice(prev); err != nil {
			t.Fatal(err)
		}
	}()
	if err := SetDefaultDevice(CPU); err != nil {
		t.Fatal(err)
	}
	if d := must(DefaultDevice()); d != CPU {
		t.Fatalf("default %v after setting the CPU", d)
	}
	// a CUDA device beyond the count is refused and leaves the default alone
	if err := SetDefaultDevice(CUDA(ncuda)); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("absent CUDA device: %v", err)
	}
	if d := must(DefaultDevice()); d != CPU {
		t.Fatalf("default %v after a refused set", d)
	}
	// arrays made while the CPU is the default run there; ToDevice(CPU) keeps the values
	a := ar.f32(xv, 2, 3)
	c := ar.k(ToDevice(a, CPU))
	if d := must(c.Device()); d != CPU {
		t.Fatalf("ToDevice(CPU) on %v", d)
	}
	checkClose(t, "ToDevice", ar.vals(c), widen(xv), 0)
	if _, err := ToDevice(nil, CPU); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ToDevice nil: %v", err)
	}
	if ncuda == 0 {
		if _, err := ToDevice(a, CUDA(0)); err == nil {
			t.Fatal("ToDevice to an absent CUDA device succeeded")
		}
	}
	// EvalAsync then Synchronize then read
	neg := ar.k(Negative(a))
	sq := ar.k(Square(neg))
	if err := EvalAsync(neg, sq); err != nil {
		t.Fatal(err)
	}
	if err := Synchronize(CPU); err != nil {
		t.Fatal(err)
	}
	want := make([]float64, 6)
	for i, v := range xv {
		want[i] = float64(v) * float64(v)
	}
	checkClose(t, "EvalAsync", ar.vals(sq), want, tolF32)
	if err := EvalAsync(); err != nil {
		t.Fatalf("EvalAsync of nothing: %v", err)
	}
	if err := EvalAsync(a, nil); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("EvalAsync nil: %v", err)
	}
	// cache limit round trip
	p0, err := SetCacheLimit(CPU, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if p1 := must(SetCacheLimit(CPU, p0)); p1 != 1<<20 {
		t.Fatalf("SetCacheLimit returned %d, want %d", p1, 1<<20)
	}
	if p2 := must(SetCacheLimit(CPU, p0)); p2 != p0 {
		t.Fatalf("SetCacheLimit restore: %d vs %d", p2, p0)
	}
	// peak: a 4 MiB temporary raises it; reset brings it back to the active figure
	big := must(Zeros(Float32, 1<<20))
	bigSum := must(Sum(big, false))
	must(0, Eval(bigSum))
	big.Free()
	bigSum.Free()
	st := must(GetMemoryStats(CPU))
	if st.Peak < st.Active+(1<<22) {
		t.Fatalf("peak %d does not cover a 4 MiB temporary over active %d", st.Peak, st.Active)
	}
	if err := ResetPeakMemory(CPU); err != nil {
		t.Fatal(err)
	}
	st2 := must(GetMemoryStats(CPU))
	if st2.Peak >= st.Peak || st2.Peak < st2.Active {
		t.Fatalf("after reset: peak %d (was %d), active %d", st2.Peak, st.Peak, st2.Active)
	}
	if err := ResetPeakMemory(Device{Type: 5}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ResetPeakMemory bad device: %v", err)
	}
	if _, err := SetCacheLimit(Device{Type: 5}, 0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("SetCacheLimit bad device: %v", err)
	}
	if err := Synchronize(Device{Type: -1}); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Synchronize bad device: %v", err)
	}
}

func TestCoverAccessors(t *testing.T) {
	ar := newArena(t)
	a := ar.f32(xv, 2, 3)
	if d := must(a.Dim(0)); d != 2 {
		t.Fatalf("Dim(0) %d", d)
	}
	if d := must(a.Dim(-1)); d != 3 {
		t.Fatalf("Dim(-1) %d", d)
	}
	if _, err := a.Dim(2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Dim out of range: %v", err)
	}
	if n := a.NBytes(); n != 6*4 {
		t.Fatalf("NBytes %d", n)
	}
	if n := ar.k(FromInt64([]int64{1, 2}, 2)).NBytes(); n != 16 {
		t.Fatalf("NBytes int64 %d", n)
	}
	big := ar.k(FromInt64([]int64{1<<53 + 1}, 1))
	if v := must(big.ItemInt64()); v != 1<<53+1 {
		t.Fatalf("ItemInt64 %d", v)
	}
	if v := must(ar.k(Scalar(-7, Int32)).ItemInt64()); v != -7 {
		t.Fatalf("ItemInt64 int32 %d", v)
	}
	if _, err := a.ItemInt64(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ItemInt64 of 6 values: %v", err)
	}
	// Retain: a second handle that outlives the first
	src := must(FromFloat32([]float32{4, 5}, 2))
	r := ar.k(src.Retain())
	src.Free()
	checkClose(t, "Retain", ar.vals(r), []float64{4, 5}, 0)
	// freed arrays
	if _, err := src.Retain(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Retain freed: %v", err)
	}
	if _, err := src.Dim(0); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("Dim freed: %v", err)
	}
	if _, err := src.ItemInt64(); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("ItemInt64 freed: %v", err)
	}
	if src.NBytes() != 0 {
		t.Fatal("NBytes freed")
	}
	if s := a.String(); s != "Array([2 3], float32)" {
		t.Fatalf("String %q", s)
	}
	if s := src.String(); s != "Array(freed)" {
		t.Fatalf("String of a freed array %q", s)
	}
}

func TestCoverFromCMemory(t *testing.T) {
	// mmap'd memory is not Go's, so C may keep it
	buf, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	vals := unsafe.Slice((*float32)(unsafe.Pointer(&buf[0])), 6)
	copy(vals, xv)
	released := 0
	a, err := FromCMemory(unsafe.Pointer(&buf[0]), Float32, func() {
		released++
		if err := syscall.Munmap(buf); err != nil {
			t.Errorf("munmap: %v", err)
		}
	}, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !sameShape(a.Shape(), []int64{2, 3}) || a.Dtype() != Float32 {
		t.Fatalf("shape %v dtype %v", a.Shape(), a.Dtype())
	}
	// no copy: a write to the buffer shows through
	vals[4] = 42
	want := widen(xv)
	want[4] = 42
	neg := must(Negative(a))
	a.Free()
	if released != 0 {
		t.Fatal("released while an array computed from it is alive")
	}
	got := must(neg.Float64s())
	for i := range want {
		if got[i] != -want[i] {
			t.Fatalf("Negative of the C buffer %v want -%v", got, want)
		}
	}
	neg.Free()
	runtime.GC()
	if released != 1 {
		t.Fatalf("release ran %d times after the last array was freed", released)
	}
	// a nil release, and errors (misaligned data, bad dtype): release is not called
	p, err := syscall.Mmap(-1, 0, 4096, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(p)
	z, err := FromCMemory(unsafe.Pointer(&p[0]), Int64, nil, 4)
	if err != nil {
		t.Fatal(err)
	}
	if v := must(z.Int64s()); len(v) != 4 || v[0] != 0 || v[3] != 0 {
		t.Fatalf("zeroed mmap %v", v)
	}
	z.Free()
	calls := 0
	if _, err := FromCMemory(unsafe.Pointer(&p[1]), Float32, func() { calls++ }, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("misaligned: %v", err)
	}
	if _, err := FromCMemory(unsafe.Pointer(&p[0]), Dtype(50), func() { calls++ }, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bad dtype: %v", err)
	}
	if _, err := FromCMemory(nil, Float32, func() { calls++ }, 2); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("nil data: %v", err)
	}
	if calls != 0 {
		t.Fatalf("release called %d times on failed calls", calls)
	}
}

func TestCoverNoLeaks(t *testing.T) {
	// every array above was freed explicitly: the finalizer safety net found none
	runtime.GC() // finalizers of unreachable unfreed arrays run after a collection
	runtime.GC()
	if LeakedHandles() != 0 {
		t.Fatalf("%d handles reached the finalizer", LeakedHandles())
	}
}
