// Command generate loads a model and streams a greedy (or sampled) continuation of a prompt.
//
//	go run ./examples/generate -model ./Llama-3.2-1B -prompt "The capital of France is"
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"ingot/model"
	"ingot/sample"
)

func main() {
	dir := flag.String("model", "", "checkpoint directory")
	prompt := flag.String("prompt", "Hello", "prompt text")
	device := flag.String("device", "", "cpu or cuda:N (default: ingot's default)")
	adapter := flag.String("adapter", "", "LoRA adapter directory (optional)")
	maxTokens := flag.Int64("max-tokens", 64, "tokens to generate")
	temp := flag.Float64("temperature", 0, "0: greedy")
	flag.Parse()
	// Ctrl-C cancels generation at the next token.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	opts := model.Options{Device: *device, Adapter: *adapter}
	g, err := run(ctx, os.Stdout, *dir, opts, *prompt, *maxTokens, float32(*temp))
	fmt.Println()
	if g != nil {
		fmt.Fprintf(os.Stderr, "%d tokens, %.1f tok/s decode, finish=%d\n", g.Metrics.GeneratedTokens,
			g.Metrics.DecodeTokensPerSecond, g.Finish)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// run loads the model, encodes the prompt and streams the continuation's text to w.
func run(ctx context.Context, w io.Writer, dir string, opts model.Options, prompt string,
	maxTokens int64, temp float32) (*model.Generation, error) {
	m, err := model.Load(dir, opts)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		return nil, err
	}
	defer tok.Close()
	ids, err := tok.Encode(prompt, true)
	if err != nil {
		return nil, err
	}
	o := sample.DefaultOptions()
	o.MaxTokens = maxTokens
	o.Temperature = temp
	o.OnText = func(piece string) { fmt.Fprint(w, piece) }
	return m.Generate(ctx, ids, o)
}
