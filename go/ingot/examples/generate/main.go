// Command generate loads a model and streams a greedy (or sampled) continuation of a prompt.
//
//	go run ./examples/generate -model ./Llama-3.2-1B -prompt "The capital of France is"
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"

	"ingot"
)

func main() {
	dir := flag.String("model", "", "checkpoint directory")
	prompt := flag.String("prompt", "Hello", "prompt text")
	device := flag.String("device", "", "cpu or cuda:N (default: ingot's default)")
	maxTokens := flag.Int64("max-tokens", 64, "tokens to generate")
	temp := flag.Float64("temperature", 0, "0: greedy")
	flag.Parse()
	if err := run(*dir, *prompt, *device, *maxTokens, float32(*temp)); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

func run(dir, prompt, device string, maxTokens int64, temp float32) error {
	m, err := ingot.LoadModel(dir, ingot.ModelOptions{Device: device})
	if err != nil {
		return err
	}
	defer m.Close()
	tok, err := m.Tokenizer()
	if err != nil {
		return err
	}
	defer tok.Close()
	ids, err := tok.Encode(prompt, true)
	if err != nil {
		return err
	}
	// Ctrl-C cancels generation at the next token.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	o := ingot.DefaultGenerateOptions()
	o.MaxTokens = maxTokens
	o.Temperature = temp
	o.OnText = func(piece string) { fmt.Print(piece) }
	g, err := m.Generate(ctx, ids, o)
	fmt.Println()
	if g != nil {
		fmt.Fprintf(os.Stderr, "%d tokens, %.1f tok/s decode, finish=%d\n", g.Metrics.GeneratedTokens,
			g.Metrics.DecodeTokensPerSecond, g.Finish)
	}
	return err
}
