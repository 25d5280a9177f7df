// Command lora fine-tunes a LoRA adapter on a JSONL file, saves it, reloads the model with it
// and shows what changed: the mean loss of the training data before and after, and a greedy
// continuation of a prompt. With -fuse DIR it also writes the merged checkpoint.
//
//	go run ./examples/lora -model ./Qwen3-0.6B -data train.jsonl -out ./my-adapter -iters 200
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"ingot"
	"ingot/model"
	"ingot/sample"
)

// Config of one run.
type Config struct {
	Model, Data, Valid, Out, Fuse, Device, Dtype, Prompt string
	Iters                                                int64
	BatchSize, Rank                                      int
	LR                                                   float32
}

// Report is what run measured.
type Report struct {
	// Mean next-token loss of the data's {"text"} lines and completions: the base model, the
	// reloaded adapter and the fused checkpoint (when -fuse is given).
	LossBefore, LossAfter, LossFused float64
	Train                            *ingot.TrainResult
	Text                             string // greedy continuation of Prompt with the adapter
}

func main() {
	var c Config
	flag.StringVar(&c.Model, "model", "", "base checkpoint directory")
	flag.StringVar(&c.Data, "data", "", "training JSONL ({\"text\"}, {\"prompt\",\"completion\"} or {\"messages\"})")
	flag.StringVar(&c.Valid, "valid", "", "validation JSONL (optional)")
	flag.StringVar(&c.Out, "out", "adapter", "adapter output directory")
	flag.StringVar(&c.Fuse, "fuse", "", "also write the fused checkpoint here")
	flag.StringVar(&c.Device, "device", "", "cpu or cuda:N")
	flag.StringVar(&c.Dtype, "dtype", "", "compute dtype (default: the checkpoint's)")
	flag.StringVar(&c.Prompt, "prompt", "", "prompt to continue with the adapter")
	flag.Int64Var(&c.Iters, "iters", 100, "optimizer steps")
	flag.IntVar(&c.BatchSize, "batch-size", 4, "examples per step")
	flag.IntVar(&c.Rank, "rank", 8, "LoRA rank")
	lr := flag.Float64("lr", 1e-4, "learning rate")
	flag.Parse()
	c.LR = float32(*lr)
	// Ctrl-C stops training after the current step; the adapter so far is still saved.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if _, err := run(ctx, os.Stderr, c); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// dataLoss is the mean next-token loss under m of the data's {"text"} lines (all tokens after
// BOS, and EOS) and {"prompt","completion"} lines (the completion and EOS), through Score.
func dataLoss(m *model.Model, data string) (float64, error) {
	tok, err := m.Tokenizer()
	if err != nil {
		return 0, err
	}
	defer tok.Close()
	eos, err := tok.EOSIDs()
	if err != nil || len(eos) == 0 {
		return 0, fmt.Errorf("the tokenizer has no EOS id (%v)", err)
	}
	f, err := os.Open(data)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var prompts, conts [][]int32
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		var rec struct{ Text, Prompt, Completion string }
		if len(sc.Bytes()) == 0 {
			continue
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return 0, err
		}
		var full, prompt []int32
		if rec.Text != "" {
			if full, err = tok.Encode(rec.Text, true); err != nil {
				return 0, err
			}
			prompt = full[:1]
		} else if rec.Completion != "" {
			if prompt, err = tok.Encode(rec.Prompt, true); err != nil {
				return 0, err
			}
			if full, err = tok.Encode(rec.Prompt+rec.Completion, true); err != nil {
				return 0, err
			}
		} else {
			continue
		}
		cont := append(append([]int32{}, full[len(prompt):]...), eos[0])
		prompts, conts = append(prompts, prompt), append(conts, cont)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	sums, _, err := m.Score(prompts, conts, 0)
	if err != nil {
		return 0, err
	}
	total, n := 0.0, 0
	for i, s := range sums {
		total -= s
		n += len(conts[i])
	}
	if n == 0 {
		return 0, fmt.Errorf("%s: no {\"text\"} or {\"prompt\",\"completion\"} lines", data)
	}
	return total / float64(n), nil
}

func run(ctx context.Context, log io.Writer, c Config) (*Report, error) {
	rep := &Report{}
	base, err := model.Load(c.Model, model.Options{Device: c.Device, Dtype: c.Dtype})
	if err != nil {
		return nil, err
	}
	defer base.Close()
	if rep.LossBefore, err = dataLoss(base, c.Data); err != nil {
		return nil, err
	}

	// 1. A fresh adapter on q_proj and v_proj, trained and saved to c.Out.
	lc := ingot.DefaultLoraConfig()
	lc.Rank, lc.Alpha = c.Rank, float32(2*c.Rank)
	a, err := base.NewAdapter(lc)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	o := ingot.DefaultTrainOptions()
	o.Iters, o.BatchSize, o.LearningRate, o.OutDir = c.Iters, c.BatchSize, c.LR, c.Out
	if c.Valid != "" {
		o.EvalEvery = 10
	}
	o.OnStep = func(p ingot.TrainProgress) bool {
		fmt.Fprintf(log, "step %d/%d  loss %.4f  lr %.2e  %d tokens\n", p.Step, p.Iters, p.Loss, p.LearningRate, p.Tokens)
		return true
	}
	if rep.Train, err = base.Train(ctx, a, c.Data, c.Valid, o); err != nil && rep.Train == nil {
		return nil, err
	}
	if err != nil { // cancelled: what was trained is still saved
		if serr := a.Save(c.Out); serr != nil {
			return nil, serr
		}
		return rep, err
	}

	// 2. Reload: the base model with the saved adapter applied.
	tuned, err := model.Load(c.Model, model.Options{Device: c.Device, Dtype: c.Dtype, Adapter: c.Out})
	if err != nil {
		return nil, err
	}
	defer tuned.Close()
	if rep.LossAfter, err = dataLoss(tuned, c.Data); err != nil {
		return nil, err
	}
	fmt.Fprintf(log, "loss of the data: %.4f before, %.4f with the adapter from %s\n", rep.LossBefore, rep.LossAfter, c.Out)
	if c.Prompt != "" {
		tok, err := tuned.Tokenizer()
		if err != nil {
			return nil, err
		}
		defer tok.Close()
		ids, err := tok.Encode(c.Prompt, true)
		if err != nil {
			return nil, err
		}
		g, err := tuned.Generate(ctx, ids, sample.DefaultOptions())
		if err != nil {
			return nil, err
		}
		rep.Text = g.Text
		fmt.Fprintf(log, "%s%s\n", c.Prompt, g.Text)
	}

	// 3. Optionally merge it into a standalone checkpoint.
	if c.Fuse != "" {
		if err := model.Fuse(c.Model, c.Out, c.Fuse, model.Options{Device: c.Device, Dtype: c.Dtype}); err != nil {
			return nil, err
		}
		fused, err := model.Load(c.Fuse, model.Options{Device: c.Device})
		if err != nil {
			return nil, err
		}
		defer fused.Close()
		if rep.LossFused, err = dataLoss(fused, c.Data); err != nil {
			return nil, err
		}
		fmt.Fprintf(log, "fused checkpoint written to %s (loss of the data %.4f)\n", c.Fuse, rep.LossFused)
	}
	return rep, nil
}
