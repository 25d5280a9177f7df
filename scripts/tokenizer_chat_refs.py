#!/usr/bin/env python3
# Renders the real chat templates (tokenizer_config.json of the pinned npm tokenizers) with Python
# jinja2 configured exactly as transformers does, writing conversation inputs and golden renderings
# to tests/data/tokenizer/chat/. Also renders feature templates (tests/data/tokenizer/jinja/).
# Usage: scripts/tokenizer_chat_refs.py TOKWORK_DIR   (holds gemma3/ qwen3/ llama3_1/ models dirs)
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data", "tokenizer")


class TemplateError(Exception):
    pass


def make_env():
    # Mirrors transformers.utils.chat_template_utils._compile_jinja_template.
    def raise_exception(message):
        raise TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                          sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_tokens(cfg):
    out = {}
    for k in ("bos_token", "eos_token", "unk_token", "pad_token"):
        v = cfg.get(k)
        if isinstance(v, dict):
            v = v.get("content")
        if v is not None:
            out[k] = v
    if cfg.get("additional_special_tokens"):
        out["additional_special_tokens"] = cfg["additional_special_tokens"]
    return out


def render(env, template, conv, cfg):
    kwargs = dict(special_tokens(cfg))
    for k, v in conv.items():
        if k not in ("messages", "tools", "documents", "add_generation_prompt"):
            kwargs[k] = v
    return env.from_string(template).render(
        messages=conv["messages"], tools=conv.get("tools"), documents=conv.get("documents"),
        add_generation_prompt=conv.get("add_generation_prompt", False), **kwargs)


WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the current weather in a city (°C or °F).",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "City name, e.g. Zürich"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
CALC_TOOL = {"type": "function", "function": {
    "name": "calc", "description": "Evaluate an arithmetic expression.",
    "parameters": {"type": "object", "properties": {"expr": {"type": "string"},
                                                   "precision": {"type": "integer", "default": 2},
                                                   "ratio": {"type": "number", "default": 0.5}},
                   "required": ["expr"]}}}

BASIC = [
    {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Hello!"}], "add_generation_prompt": False},
    {"messages": [{"role": "system", "content": "You are a terse assistant."},
                  {"role": "user", "content": "What is 2+2?"}], "add_generation_prompt": True},
    {"messages": [{"role": "system", "content": "Be kind."},
                  {"role": "user", "content": "  Hi there  \n"},
                  {"role": "assistant", "content": "Hello! How can I help?"},
                  {"role": "user", "content": "Tell me a joke."}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Translate: 猫"},
                  {"role": "assistant", "content": "Cat 🐱"},
                  {"role": "user", "content": "And 犬?"},
                  {"role": "assistant", "content": "Dog 🐶"}], "add_generation_prompt": False},
    {"messages": [{"role": "user", "content": "Quote \"this\" and 'that' \\ backslash\n\n\ttab"}],
     "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": ""}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Multi\nline\n\n\nmessage with <tags> & {{ braces }} {% raw %}"},
                  {"role": "assistant", "content": "ok"}], "add_generation_prompt": True},
]

GEMMA_EXTRA = [
    {"messages": [{"role": "system", "content": [{"type": "text", "text": "System as parts."}]},
                  {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": " Describe this image. "}]}],
     "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "part one"}, {"type": "text", "text": "part two"}]},
                  {"role": "assistant", "content": [{"type": "text", "text": "answer"}]}],
     "add_generation_prompt": False},
    {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                  {"role": "user", "content": "c"}, {"role": "assistant", "content": "d"},
                  {"role": "user", "content": "e"}], "add_generation_prompt": True},
    {"messages": [{"role": "system", "content": "Only system"}, {"role": "user", "content": "x"}],
     "add_generation_prompt": False},
]

QWEN_EXTRA = [
    {"messages": [{"role": "user", "content": "What's the weather in Paris?"}],
     "tools": [WEATHER_TOOL, CALC_TOOL], "add_generation_prompt": True},
    {"messages": [{"role": "system", "content": "You are a weather bot."},
                  {"role": "user", "content": "Weather in Zürich and 東京?"},
                  {"role": "assistant", "content": "",
                   "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Zürich", "unit": "celsius"}}},
                                  {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "東京"}}}]},
                  {"role": "tool", "content": "{\"temp\": 21}"},
                  {"role": "tool", "content": "{\"temp\": 25.5}"}],
     "tools": [WEATHER_TOOL], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Compute 3*7"},
                  {"role": "assistant", "content": "Let me compute.",
                   "tool_calls": [{"function": {"name": "calc", "arguments": "{\"expr\": \"3*7\"}"}}]},
                  {"role": "tool", "content": "21"},
                  {"role": "assistant", "content": "The answer is 21."}],
     "tools": [CALC_TOOL], "add_generation_prompt": False},
    {"messages": [{"role": "user", "content": "Think about it."},
                  {"role": "assistant", "content": "<think>\nHmm, let me think.\n</think>\n\nDone thinking."},
                  {"role": "user", "content": "Again?"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Q1"},
                  {"role": "assistant", "content": "A1", "reasoning_content": "R1 reasoning"},
                  {"role": "user", "content": "Q2"},
                  {"role": "assistant", "content": "A2", "reasoning_content": "\nR2 reasoning\n"}],
     "add_generation_prompt": False},
    {"messages": [{"role": "user", "content": "No thinking please."}],
     "add_generation_prompt": True, "enable_thinking": False},
    {"messages": [{"role": "user", "content": "Thinking allowed."}],
     "add_generation_prompt": True, "enable_thinking": True},
    {"messages": [{"role": "user", "content": "<tool_response>\nfake\n</tool_response>"},
                  {"role": "assistant", "content": "<think>inner</think>visible"}],
     "add_generation_prompt": False},
]

LLAMA_EXTRA = [
    {"messages": [{"role": "system", "content": "  padded system  "},
                  {"role": "user", "content": "\n\nhi\n\n"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"},
                  {"role": "user", "content": "q2"}, {"role": "assistant", "content": "a2"}],
     "add_generation_prompt": False},
    {"messages": [{"role": "ipython", "content": "{\"result\": 1}"}], "add_generation_prompt": True},
    {"messages": [{"role": "user", "content": "Emoji 👨‍👩‍👧 and Arabic مرحبا"}], "add_generation_prompt": False},
]

# Feature templates for the engine (rendered with the same environment).
FEATURES = [
    ("if_elif", "{% if x > 3 %}big{% elif x > 1 %}mid{% else %}small{% endif %}", {"x": 2}),
    ("for_loop", "{% for i in items %}{{ loop.index }}/{{ loop.length }}:{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}",
     {"items": ["a", "b", "c"]}),
    ("for_else", "{% for i in [] %}x{% else %}empty{% endfor %}", {}),
    ("loop_vars", "{% for i in 'abc' %}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}{{ loop.first }}{{ loop.last }}{{ loop.previtem }}{{ loop.nextitem }};{% endfor %}", {}),
    ("loop_cycle", "{% for i in range(5) %}{{ loop.cycle('odd', 'even') }} {% endfor %}", {}),
    ("for_filter", "{% for i in range(10) if i is even %}{{ i }}{% endfor %}", {}),
    ("for_unpack", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", {"d": {"b": 1, "a": [1, 2]}}),
    ("break_continue", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("set_namespace", "{% set ns = namespace(c=0, s='') %}{% for i in range(4) %}{% set ns.c = ns.c + i %}{% set ns.s = ns.s ~ i %}{% endfor %}{{ ns.c }} {{ ns.s }}", {}),
    ("set_scope", "{% set x = 1 %}{% for i in range(3) %}{% set x = i %}{% endfor %}{{ x }}", {}),
    ("set_block", "{% set body %}inner {{ 1 + 2 }}{% endset %}[{{ body }}]", {}),
    ("macro_call", "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}!{% endmacro %}{{ greet('Ann') }} {{ greet('Bob', greeting='Hi') }} {{ greet(name='Cy') }}", {}),
    ("macro_caller", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold {{ 7 * 6 }}{% endcall %}", {}),
    ("filter_block", "{% filter upper %}shout {{ 'this' }}{% endfilter %}", {}),
    ("raw", "{% raw %}{{ not rendered }} {% if %}{% endraw %}", {}),
    ("tests", "{{ x is defined }} {{ y is defined }} {{ n is none }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ 3 is number }} {{ s is iterable }} {{ d is iterable }} {{ 4 is even }} {{ 3 is odd }} {{ 9 is divisibleby 3 }} {{ t is true }} {{ t is false }} {{ f is false }} {{ l is sequence }} {{ 3 is integer }} {{ 3.5 is float }} {{ d is not mapping }} {{ t is boolean }} {{ 'A' is upper }} {{ 'a' is lower }}",
     {"x": 1, "n": None, "s": "str", "d": {"a": 1}, "l": [1], "t": True, "f": False}),
    ("in_ops", "{{ 'a' in 'cat' }} {{ 2 in [1,2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'cat' }}", {}),
    ("slicing", "{{ s[1:3] }} {{ s[::-1] }} {{ l[1:] }} {{ l[:-1] }} {{ l[::2] }} {{ l[-1] }} {{ s[-2:] }}",
     {"s": "hello", "l": [1, 2, 3, 4, 5]}),
    ("concat_ternary", "{{ 'a' ~ 1 ~ none ~ true }} {{ 'yes' if c else 'no' }} {{ 'x' if not c }}|", {"c": False}),
    ("arith", "{{ 7 // 2 }} {{ 7 / 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ -3 + 1.5 }} {{ 10 / 5 }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 3 * 'ab' }} {{ [1] + [2] }}", {}),
    ("compare_logic", "{{ 1 < 2 and 2 <= 2 or false }} {{ not 1 == 1 }} {{ 'a' != 'b' }} {{ none or 'default' }} {{ 0 and 1 }} {{ [] or 'empty' }}", {}),
    ("filters_str", "{{ '  pad  ' | trim }}|{{ 'Abc' | upper }}|{{ 'Abc' | lower }}|{{ 'hello world' | title }}|{{ 'hello' | capitalize }}|{{ 'a-b-c' | replace('-', '+') }}|{{ 'abc' | length }}|{{ 'x' | default('d') }}|{{ missing | default('d') }}|{{ '' | default('d', true) }}",
     {}),
    ("filters_list", "{{ l | join(', ') }}|{{ l | first }}|{{ l | last }}|{{ l | length }}|{{ l | reverse | list }}|{{ l | sort | list }}|{{ l | unique | list }}|{{ l | min }}|{{ l | max }}|{{ l | sum }}|{{ l | map('string') | join }}",
     {"l": [3, 1, 2, 3]}),
    ("selectattr_map", "{{ users | selectattr('active') | map(attribute='name') | join(',') }} {{ users | rejectattr('active') | map(attribute='name') | list }} {{ users | selectattr('role', 'equalto', 'admin') | list | length }} {{ users | map(attribute='name') | map('upper') | list }}",
     {"users": [{"name": "ann", "active": True, "role": "admin"}, {"name": "bob", "active": False, "role": "user"}, {"name": "cy", "active": True, "role": "user"}]}),
    ("items_dictsort", "{% for k, v in d | items %}{{ k }}:{{ v }} {% endfor %}{% for k, v in d | dictsort %}{{ k }}{% endfor %}", {"d": {"z": 1, "a": 2}}),
    ("tojson", "{{ d | tojson }}\n{{ d | tojson(indent=2) }}\n{{ 'ü\"<>&' | tojson }}\n{{ [1.5, none, true, 'x'] | tojson }}\n{{ d | tojson(sort_keys=true) }}",
     {"d": {"b": [1, {"c": None}], "a": "é", "n": 1.0, "e": {}, "l": []}}),
    ("indent", "{{ 'a\nb\n\nc' | indent(2) }}|{{ 'a\nb' | indent(4, true) }}|{{ 'x\ny' | indent(first=true) }}", {}),
    ("safe_string", "{{ '<b>' | safe }} {{ 5 | string }} {{ '3' | int + 1 }} {{ '2.5' | float }} {{ 3 | float }} {{ 2.7 | int }} {{ -1 | abs }} {{ 2.567 | round(2) }}", {}),
    ("str_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ 'xxaxx'.strip('x') }}|{{ 'a,b,,c'.split(',') }}|{{ 'a b  c'.split() }}|{{ 'Hello'.startswith('He') }}|{{ 'Hello'.endswith('lo') }}|{{ 'ab'.upper() }}|{{ 'AB'.lower() }}|{{ 'a-b'.replace('-', '_') }}|{{ 'hi there'.title() }}|{{ 'abc'.find('c') }}|{{ 'x'.join(['1','2']) }}|{{ 'hello'.capitalize() }}",
     {"s": "  padded \n"}),
    ("dict_methods", "{{ d.get('a') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d['a'] }} {{ d.a }}", {"d": {"a": 1, "b": "two"}}),
    ("python_repr", "{{ d }} {{ l }} {{ none }} {{ true }} {{ 1.0 }} {{ 'it\\'s' }} {{ [\"q'\", 'x\"y'] }} {{ (1, 2) }}", {"d": {"k": [1, "v", None, True, 2.5]}, "l": ["a", {"b": False}]}),
    ("whitespace_control", "a  {%- if true -%}  b  {%- endif -%}  c\n  {{- ' d ' -}}  \n  e", {}),
    ("trim_lstrip", "line1\n    {% if true %}\n    inner\n    {% endif %}\nline2\n  {# comment #}\nline3\n", {}),
    ("comment", "a{# a comment {{ x }} #}b{#- trimmed -#}  c", {}),
    ("string_escapes", "{{ 'tab\\tnl\\nq\\'dq\"bs\\\\' }}|{{ \"double \\\"quoted\\\"\" }}", {}),
    ("list_dict_literals", "{% set l = [1, 'two', [3]] %}{% set d = {'k': 'v', 'n': 2} %}{{ l[2][0] }} {{ d['k'] }} {{ d | length }}", {}),
    ("undefined_attr", "[{{ d.missing }}][{{ d.missing is defined }}][{{ missing }}][{% if d.missing %}t{% else %}f{% endif %}]", {"d": {}}),
    ("nested_loops", "{% for row in m %}{% set outer = loop %}{% for c in row %}{{ outer.index }}{{ loop.index }}{{ c }} {% endfor %}{% endfor %}", {"m": [[1, 2], [3]]}),
    ("strftime_fixed", "{{ x }}", {"x": "no time here"}),
    ("raise_in_branch", "{% if false %}{{ raise_exception('never') }}{% endif %}ok", {}),
    ("is_string_content", "{% for m in msgs %}{% if m.content is string %}S{% elif m.content is iterable %}I{% endif %}{% endfor %}",
     {"msgs": [{"content": "x"}, {"content": [1]}]}),
    ("math_precedence", "{{ 1 + 2 * 3 - 4 / 2 }} {{ (1 + 2) * 3 }} {{ -2 ** 2 }} {{ 2 ** 3 ** 2 }} {{ 10 - 2 - 3 }} {{ not false and false }}", {}),
    ("string_compare", "{{ 'abc' < 'abd' }} {{ [1,2] == [1,2] }} {{ {'a':1} == {'a':1} }} {{ 1 == 1.0 }} {{ 'a' == 'a' }}", {}),
    ("batch_count", "{{ 'hello' | count }} {{ 'hello world foo' | wordcount }} {{ [1,2,3] | batch(2) | list }}", {}),
]

ERRORS = [
    ("err_raise", "line1\n{{ raise_exception('custom failure') }}", {}),
    ("err_syntax_unclosed", "{% if x %}\nunclosed", {}),
    ("err_syntax_bad_expr", "ok\n{{ 1 + }}", {}),
    ("err_unknown_tag", "{% frobnicate %}", {}),
]


def main():
    tokwork = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", ".tokwork")
    env = make_env()
    chat_dir = os.path.join(DATA, "chat")
    os.makedirs(chat_dir, exist_ok=True)
    total = 0
    for name, extra in (("gemma3", GEMMA_EXTRA), ("qwen3", QWEN_EXTRA), ("llama3_1", LLAMA_EXTRA)):
        cfg = json.load(open(os.path.join(tokwork, name, "package", "models", "tokenizer_config.json"),
                             encoding="utf-8"))
        convs = BASIC + extra
        for i, conv in enumerate(convs):
            base = os.path.join(chat_dir, f"{name}_{i:02d}")
            with open(base + ".json", "w", encoding="utf-8") as f:
                json.dump(conv, f, ensure_ascii=False, indent=1)
            out = render(env, cfg["chat_template"], conv, cfg)
            with open(base + ".txt", "w", encoding="utf-8", newline="") as f:
                f.write(out)
            total += 1
    jdir = os.path.join(DATA, "jinja")
    os.makedirs(jdir, exist_ok=True)
    cases = []
    for name, tmpl, ctx in FEATURES:
        out = env.from_string(tmpl).render(**ctx)
        cases.append({"name": name, "template": tmpl, "context": ctx, "expected": out})
    for name, tmpl, ctx in ERRORS:
        try:
            env.from_string(tmpl).render(**ctx)
            raise SystemExit(f"{name} did not fail")
        except (TemplateError, jinja2.TemplateError) as e:
            cases.append({"name": name, "template": tmpl, "context": ctx, "error": str(e),
                          "line": getattr(e, "lineno", None)})
    with open(os.path.join(jdir, "features.json"), "w", encoding="utf-8") as f:
        json.dump(cases, f, ensure_ascii=False, indent=1)
    print(f"rendered {total} conversations and {len(cases)} feature templates")


if __name__ == "__main__":
    main()
