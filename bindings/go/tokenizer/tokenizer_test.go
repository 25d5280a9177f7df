package tokenizer

import (
	"errors"
	"os"
	"strings"
	"testing"

	"ingot"
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

func TestTokenizer(t *testing.T) {
	tok := must(Load(fixture(t)))
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
	if _, err := tok.TokenToID("definitely-not-a-token"); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("unknown token: %v", err)
	}
	var nilTok *Tokenizer
	if _, err := nilTok.Encode("x", true); !errors.Is(err, ingot.ErrInvalidArgument) {
		t.Fatalf("nil tokenizer: %v", err)
	}
}

// VocabSize, TokenToID, EOSIDs and ApplyChatTemplate against the fixture's files: tokenizer.json
// has 384 ids with <|eos|> = 2 and <|im_end|> = 4, generation_config.json lists EOS ids [2, 4],
// and tokenizer_config.json's template renders bos, then "<|im_start|>role\ncontent<|im_end|>\n"
// per message, then "<|im_start|>assistant\n" when a generation prompt is asked for.
func TestTokenizerVocabEOSAndChatTemplate(t *testing.T) {
	tok := must(Load(fixture(t)))
	defer tok.Close()
	if n := must(tok.VocabSize()); n != 384 {
		t.Fatalf("vocab size %d", n)
	}
	if id := must(tok.TokenToID("<|im_end|>")); id != 4 {
		t.Fatalf("<|im_end|> = %d", id)
	}
	if eos := must(tok.EOSIDs()); len(eos) != 2 || eos[0] != 2 || eos[1] != 4 {
		t.Fatalf("eos ids %v", eos)
	}
	conv := `[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]`
	if s := must(tok.ApplyChatTemplate(conv, 1)); s != "<|bos|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>assistant\n" {
		t.Fatalf("with generation prompt: %q", s)
	}
	if s := must(tok.ApplyChatTemplate(conv, 0)); s != "<|bos|><|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n" {
		t.Fatalf("without generation prompt: %q", s)
	}
	if _, err := tok.ApplyChatTemplate("not json", 1); !errors.Is(err, ingot.ErrInvalidArgument) && !errors.Is(err, ingot.ErrFormat) {
		t.Fatalf("bad conversation: %v", err)
	}
	if _, err := Load("/nonexistent-tokenizer"); !errors.Is(err, ingot.ErrIO) {
		t.Fatalf("missing tokenizer: %v", err)
	}
}
