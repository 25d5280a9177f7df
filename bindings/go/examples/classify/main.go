// Command classify sorts the sentences of a JSONL file ({"text": ...} per line) into domains
// with a prompt template, writing {"label": ..., "probs": {...}} per line. With -repeat N it
// classifies the file N times and reports prompts/s and the process RSS before/after (the
// deterministic-memory check: RSS must stay flat).
//
//	go run ./examples/classify -model ./gemma-3-4b -labels " science, sports, politics" < in.jsonl
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"ingot"
	"ingot/model"
)

func main() {
	// One OS thread for all calls: ingot keeps some per-thread state (error messages, scratch),
	// so a long-running loop on one thread keeps memory steadiest.
	runtime.LockOSThread()
	dir := flag.String("model", "", "checkpoint directory")
	labels := flag.String("labels", " science, sports, politics", "comma-separated labels (spaces kept)")
	tmpl := flag.String("template", "Sentence: {text}\nDomain:", "prompt template with {text}")
	device := flag.String("device", "", "cpu or cuda:N")
	dtype := flag.String("dtype", "", "compute dtype (default: the checkpoint's)")
	adapter := flag.String("adapter", "", "LoRA adapter directory (optional)")
	batch := flag.Int("batch-size", 64, "texts per forward pass")
	repeat := flag.Int("repeat", 0, "benchmark: classify the input this many times, print only the rate")
	flag.Parse()
	if err := run(os.Stdin, os.Stdout, *dir, model.Options{Device: *device, Dtype: *dtype, Adapter: *adapter},
		strings.Split(*labels, ","), *tmpl, *batch, *repeat); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func readTexts(r io.Reader) ([]string, error) {
	var texts []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" {
			continue
		}
		var rec struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", len(texts)+1, err)
		}
		texts = append(texts, rec.Text)
	}
	return texts, sc.Err()
}

// rssKB reads the resident set size from /proc/self/status.
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

// run classifies the JSONL lines of in and writes one result line per input line to out.
func run(in io.Reader, out io.Writer, dir string, opts model.Options, labels []string, tmpl string, batch, repeat int) error {
	texts, err := readTexts(in)
	if err != nil {
		return err
	}
	m, err := model.Load(dir, opts)
	if err != nil {
		return err
	}
	defer m.Close()
	if repeat > 0 {
		if _, err := m.ClassifyTexts(tmpl, labels, texts, batch); err != nil { // warm-up
			return err
		}
		// Blocks of 50 calls: the best block's rate is robust to other load on the machine.
		var rss, goHeap []int64
		var ms runtime.MemStats
		best, start := 0.0, time.Now()
		block := time.Now()
		for i := 1; i <= repeat; i++ {
			if _, err := m.ClassifyTexts(tmpl, labels, texts, batch); err != nil {
				return err
			}
			if i%50 == 0 {
				if r := 50 * float64(len(texts)) / time.Since(block).Seconds(); r > best {
					best = r
				}
				block = time.Now()
			}
			if i == 10 || i%250 == 0 {
				rss = append(rss, rssKB())
				runtime.ReadMemStats(&ms)
				goHeap = append(goHeap, int64(ms.HeapInuse+ms.StackInuse)/1024)
			}
		}
		sec := time.Since(start).Seconds()
		fmt.Fprintf(out, "go: %d calls x %d texts: mean %.0f prompts/s, best 50-call block %.0f prompts/s; RSS kB at call 10,250,500,...: %v (Go heap+stacks in use, kB: %v); leaked handles %d\n",
			repeat, len(texts), float64(repeat*len(texts))/sec, best, rss, goHeap, ingot.LeakedHandles())
		return nil
	}
	probs, err := m.ClassifyTexts(tmpl, labels, texts, batch)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	defer w.Flush()
	for _, p := range probs {
		best := 0
		rec := map[string]float64{}
		for k, l := range labels {
			rec[l] = p[k]
			if p[k] > p[best] {
				best = k
			}
		}
		line, err := json.Marshal(map[string]any{"label": labels[best], "probs": rec})
		if err != nil {
			return err
		}
		if _, err := w.Write(append(line, '\n')); err != nil {
			return err
		}
	}
	return w.Flush()
}
