#!/usr/bin/env python3
"""Render every conversation in tests/fixtures/chat_templates/conversations.json with Hugging Face's own
chat-template machinery and write the results as expected.json for Celer.ChatTemplates' parity tests.

Run on a machine with transformers installed (no network or hub access needed):

    python tools/reference/chat_templates.py --out tests/fixtures/chat_templates/expected.json

Rendering goes through transformers.utils.chat_template_utils.render_jinja_template (the function
apply_chat_template calls). If that import fails, the script falls back to a jinja2 environment configured the
way transformers' _compile_jinja_template configures it, and records which one it used.
"""
import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "chat_templates"


def transformers_renderer():
    import transformers
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(source, messages, tools, add_generation_prompt, kwargs):
        rendered, _ = render_jinja_template(
            conversations=[messages],
            tools=tools,
            chat_template=source,
            add_generation_prompt=add_generation_prompt,
            **kwargs,
        )
        return rendered[0]

    return render, f"transformers {transformers.__version__} render_jinja_template"


def jinja2_renderer():
    """What transformers' _compile_jinja_template builds, minus the {% generation %} tracker's index bookkeeping."""
    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_render"), [], [], body).set_lineno(lineno)

        def _render(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now

    def render(source, messages, tools, add_generation_prompt, kwargs):
        return env.from_string(source).render(
            messages=messages, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **kwargs
        )

    return render, f"jinja2 {jinja2.__version__} ImmutableSandboxedEnvironment (transformers not importable)"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="where to write expected.json")
    parser.add_argument("--fixtures", default=str(FIXTURES), help="folder holding conversations.json and the *.jinja files")
    parser.add_argument("--jinja2-only", action="store_true", help="skip transformers and use the jinja2 fallback")
    args = parser.parse_args()

    fixtures = Path(args.fixtures)
    spec = json.loads((fixtures / "conversations.json").read_text(encoding="utf-8"))
    try:
        if args.jinja2_only:
            raise ImportError("--jinja2-only")
        render, generator = transformers_renderer()
    except ImportError as e:
        print(f"transformers unavailable ({e}); using the jinja2 fallback", file=sys.stderr)
        render, generator = jinja2_renderer()

    results = {}
    for case in spec["cases"]:
        template = spec["templates"][case["template"]]
        if "model" in template:  # a model directory of the repository: its tokenizer_config.json's template
            config = FIXTURES.parents[2] / template["model"] / "tokenizer_config.json"
            source = json.loads(config.read_text(encoding="utf-8"))["chat_template"]
        else:
            source = (fixtures / template["file"]).read_text(encoding="utf-8")
        kwargs = {"bos_token": template["bos_token"], "eos_token": template["eos_token"], **case.get("kwargs", {})}
        try:
            output = render(source, case["messages"], case.get("tools"), case["add_generation_prompt"], kwargs)
            results[case["name"]] = {"output": output}
        except Exception as e:  # the template's own raise_exception, or a type error it runs into
            results[case["name"]] = {"error": str(e), "error_type": type(e).__name__}

    Path(args.out).write_text(
        json.dumps({"generator": generator, "cases": results}, ensure_ascii=False, indent=2) + "\n", encoding="utf-8"
    )
    print(f"wrote {len(results)} cases to {args.out} with {generator}")


if __name__ == "__main__":
    main()
