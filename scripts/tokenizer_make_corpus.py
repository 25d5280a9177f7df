#!/usr/bin/env python3
# Writes tests/data/tokenizer/corpus.jsonl: the hand-written tokenizer corpus (DESIGN.md §9), one
# JSON object per line: {"name", "text"} or {"name", "bytes_hex"} (raw bytes, maybe invalid UTF-8).
import json
import os
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data", "tokenizer", "corpus.jsonl")

cases = []


def add(name, text):
    cases.append({"name": name, "text": text})


def add_bytes(name, b):
    cases.append({"name": name, "bytes_hex": b.hex()})


add("empty", "")
add("space", " ")
add("prose_en", "The quick brown fox jumps over the lazy dog. It's a dog's life, isn't it? "
    "We'll see; they'd said they're fine, I'm sure, you've seen it.")
add("prose_caps", "HELLO World, THIS Is SHOUTING. DON'T YOU'LL WE'VE I'M THEY'RE")
add("prose_long", ("In the beginning the Universe was created. This has made a lot of people very angry "
                   "and been widely regarded as a bad move. ") * 8)
add("code_py", "def fib(n: int) -> int:\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nprint([fib(i) for i in range(10)])\n")
add("code_cpp", "#include <vector>\nint main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;  // double\n\treturn v.size() == 3 ? 0 : 1;\n}\n")
add("code_json", '{"key": [1, 2.5, -3e10, null, true], "nested": {"a": "b\\n"}}')
add("code_html", "<div class=\"x\"><p>Hi &amp; bye</p><br/><script>alert('x')</script></div>")
add("digits", "0 1 12 123 1234 12345 123456 1234567 12345678901234567890 3.14159 -42 1e-9 0x1F 1,000,000")
add("digits_long", "9" * 97 + " " + "1234567890" * 13)
add("phone_dates", "Call +1 (555) 010-9999 on 2024-07-26 at 13:45:07Z or 26/07/2024.")
add("ws_spaces", "a  b   c    d     e      f" + " " * 40 + "g")
add("ws_tabs", "\ta\t\tb\t\t\tc\t \t d")
add("ws_newlines", "line1\nline2\n\nline3\n\n\n\nline4\r\nline5\r\rline6\n")
add("ws_mixed", " \t \n \r\n  \t\t\n\n   x  \n\t y \u3000 z\u2003w\u2009v")
add("ws_only_spaces", " " * 17)
add("ws_only_newlines", "\n" * 9)
add("ws_trailing", "trailing spaces   ")
add("ws_leading", "   leading spaces")
add("ws_nel", "a\u0085b \u0085 c\u0085\u0085d")
add("ws_feff", "a\ufeffb \ufeff c\ufeff")
add("ws_180e", "a\u180eb \u180e c")
add("ws_nbsp", "a\u00a0b \u00a0 c\u00a0\u00a0d 100\u00a0km")
add("ws_misc_unicode", "x\u2028y\u2029z\u000b\u000cw\u1680v\u202fu\u205ft")
add("cjk_zh", "我们今天去公园散步，天气非常好。人工智能正在改变世界！")
add("cjk_ja", "日本語のテキストです。カタカナとひらがな、漢字が混ざっています。")
add("ko", "안녕하세요, 세계! 한국어 텍스트 토큰화 테스트입니다.")
add("ar", "مرحبا بالعالم! هذه جملة باللغة العربية، مع أرقام ١٢٣ و 456.")
add("he", "שלום עולם! זהו משפט בעברית עם ניקוד: בְּרֵאשִׁית.")
add("hi", "नमस्ते दुनिया! यह हिन्दी में एक वाक्य है। क्षत्रिय ज्ञान")
add("th", "สวัสดีชาวโลก ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ")
add("ru", "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю.")
add("el", "Γειά σου Κόσμε! Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΆΈΉΊΌΎΏ")
add("mixed_scripts", "English 中文 日本語 한국어 العربية עברית हिन्दी ไทย Русский Ελληνικά mixedTogether中文abc")
add("emoji_basic", "I love 🍕 and 🎉! 😀😃😄")
add("emoji_zwj", "Family: 👨‍👩‍👧‍👦 Couple: 👩‍❤️‍💋‍👨 Rainbow flag: 🏳️‍🌈 Pirate: 🏴‍☠️")
add("emoji_skin", "👍🏻👍🏼👍🏽👍🏾👍🏿 🧑🏽‍💻 👋🏿")
add("emoji_flags_keycaps", "🇺🇸🇯🇵🇩🇪 1️⃣ #️⃣ ©️ ™️")
nfc = "café naïve Ångström résumé ñ Ω"
add("nfc", nfc)
add("nfd", unicodedata.normalize("NFD", nfc))
add("nfkc_candidates", "ﬁ ﬂ ① ㍿ Ｆｕｌｌｗｉｄｔｈ ½ x² ℌ ™ ﬀ")
add("hangul_nfd", unicodedata.normalize("NFD", "한국어"))
add("combining", "e\u0301\u0302\u0303 a\u0308\u0308\u0308 Z\u0351\u0352\u0353\u0354")
add("special_qwen", "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nHi!<|im_end|><|endoftext|>")
add("special_llama", "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|reserved_special_token_5|>")
add("special_gemma", "<bos><start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\nHi<end_of_turn><eos><pad>")
add("special_adjacent", "x<|im_end|>y<bos>z<|eot_id|> <|im_start|> <start_of_turn>  <end_of_turn>")
add("special_partial", "<|im_sta <|im_end| <start_of_turn <|eot_id <bos <eos> <<bos>> <|<|im_end|>|>")
add("gemma_added_html", "<table><tr><td>cell</td></tr></table> <h1>Title</h1> <strong>x</strong>")
add("gemma_unused", "<unused0> <unused99>text<start_of_image><image_soft_token><end_of_image>")
add("url", "Visit https://example.com/path/to/page?query=1&b=two#frag or http://sub.domain.co.uk:8080/x_y-z.html")
add("email_path", "mail me@example.org; see /usr/local/bin/ingot or C:\\Users\\me\\file.txt")
add("punct", "!!! ??? ... --- ___ *** ### @@@ $$$ %%% ^^^ &&& ((( ))) [[[ ]]] {{{ }}} ||| \\\\ // ;; :: ,, ''\"\" ``")
add("contractions", "I'd've it's IT'S It'S 'tis 'twas y'all don't DON'T ol' rock'n'roll 's 't 're 've 'm 'll 'd")
add("quotes_unicode", "“Smart quotes” ‘single’ «guillemets» „German“ 「Japanese」 — en–dash … ellipsis")
add("math", "∀x∈ℝ: x²≥0 ∑_{i=1}^{n} i = n(n+1)/2 √2≈1.414 ∞ ≠ ≤ ≥ ∫ ∂ ∇ α β γ")
add("long_word_5k", "supercalifragilistic" * 250)
add("long_run_a_2k", "a" * 2000)
add("long_run_space_1k", " " * 1000 + "x")
add("long_run_newline", "\n" * 300 + "end")
add("long_run_digits", "7" * 1500)
add("long_run_cjk", "的" * 800)
add("long_run_emoji", "😀" * 300)
add("long_run_dash", "-" * 700 + "=" * 300)
add("long_word_100k_a", "a" * 100000)
# deterministic pseudo-random lowercase word (LCG) to stress BPE on one huge pre-token
x = 12345
chars = []
for _ in range(20000):
    x = (x * 1103515245 + 12345) % (1 << 31)
    chars.append("abcdefghijklmnopqrstuvwxyz"[(x >> 16) % 26])
add("long_word_20k_random", "".join(chars))
add("control_chars", "a\x00b\x01c\x07d\x1be\x7ff")
add("replacement_char", "bad \ufffd char \ufffd\ufffd")
add("private_use", "\ue000\uf8ff \U000f0000")
add("astral", "𝕳𝖊𝖑𝖑𝖔 𝒲ℴ𝓇𝓁𝒹 𓀀𓁐 𠀀𠀁 🀄")
add("bom_start", "\ufeffstarts with BOM")
add("metaspace_char", "▁already▁has▁metaspace ▁ ▁▁")
add("bytelevel_chars", "Ġhello Ċ ĉ Ā ÿ")
add("single_chars", "a")
add("single_newline", "\n")
add("single_emoji", "🎉")
add("markdown", "# Title\n\n- item **bold** _it_\n- `code`\n\n```python\nx = 1\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n")
add("latex", "\\begin{equation} E = mc^2 \\end{equation} $\\frac{a}{b}$ \\alpha_{i,j}")
add("sql", "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%o%' ORDER BY id DESC LIMIT 10;")
add("base64", "SGVsbG8gV29ybGQhIFRoaXMgaXMgYmFzZTY0IGVuY29kZWQgdGV4dC4=")
add("hex_uuid", "550e8400-e29b-41d4-a716-446655440000 deadbeef 0xCAFEBABE")
add("mixed_case_words", "camelCaseWord PascalCaseWord snake_case_word SCREAMING_SNAKE kebab-case-word")
add("apostrophe_unicode", "it’s don’t ‘quoted’")
add("turkish_german", "İstanbul ıi ß ẞ straße STRASSE Ärger öl Übel")
add("vietnamese", "Tiếng Việt có dấu: Xin chào thế giới, người Việt Nam.")
add("tamil_bengali", "வணக்கம் உலகம் নমস্কার বিশ্ব")
add("amharic_georgian_armenian", "ሰላም ዓለም გამარჯობა Բարեւ")
# invalid UTF-8 (encode replaces each maximal invalid subpart with U+FFFD, like from_utf8_lossy)
add_bytes("invalid_lone_continuation", b"abc\x80def")
add_bytes("invalid_truncated", b"caf\xc3 x \xe2\x82 y \xf0\x9f\x98")
add_bytes("invalid_overlong", b"\xc0\xaf \xe0\x80\xaf \xed\xa0\x80 surrogate")
add_bytes("invalid_ff", b"\xff\xfe\xfd text \xf5\x80\x80\x80")
add_bytes("invalid_mixed_valid", "héllo ".encode() + b"\x80\x81" + "wörld 🎉".encode() + b"\xf0\x9f")

with open(OUT, "w", encoding="utf-8") as f:
    for c in cases:
        f.write(json.dumps(c, ensure_ascii=False) + "\n")
print(f"wrote {len(cases)} cases to {OUT}")
