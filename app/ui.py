"""The Gradio page: chat (streaming, multi-turn, stop, clear), a base-vs-tuned compare view, controls,
and the knowledge toggle. Widgets and wiring only; generation lives in app.engine."""
from __future__ import annotations

import gradio as gr

from app.engine import Engine, PromptRejected
from doctorkit import sampling
from doctorkit.knowledge import Hit

# The page must render on a hospital network with no internet: fonts the demo serves itself (gradio ships the
# woff2 files), then the system's own, CJK first. Never a GoogleFont (fetched from fonts.googleapis.com); the
# theme is set here, not left to gradio's default, so a gradio upgrade cannot bring the CDN back unnoticed
# (tests/test_offline.py records every request the page makes in Chromium).
THEME = gr.themes.Default(
    font=[gr.themes.utils.fonts.LocalFont("Source Sans Pro"), "Noto Sans CJK SC", "PingFang SC", "Microsoft YaHei",
          "ui-sans-serif", "system-ui", "sans-serif"],
    font_mono=[gr.themes.utils.fonts.LocalFont("IBM Plex Mono"), "ui-monospace", "monospace"])

NOTICE = ("⚠️ 本演示仅用于研究和体验，回答由模型自动生成，**不构成医疗建议**，不能替代医生诊治；如有不适请及时就医。"
          "  *Not medical advice.*")


def message_text(message: dict) -> str:
    """Plain text of a Chatbot message (Gradio hands content back as a list of typed parts)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def as_history(chatbot_value: list[dict]) -> list[dict]:
    return [{"role": m.get("role"), "content": message_text(m)} for m in chatbot_value or [] if isinstance(m, dict)]


def describe_hits(hits: list[Hit], use_knowledge: bool) -> str:
    if not use_knowledge:
        return ""
    if not hits:
        return "📚 知识库：没有足够相关的条目，本轮未使用。"
    return "📚 本轮使用的知识库条目：" + "，".join(f"**{h.entry.name}**（得分 {h.score:.1f}）" for h in hits)


def build_demo(engine: Engine, max_input_chars: int | None = None, run_name: str = "",
               max_new_tokens: int = sampling.MAX_NEW_TOKENS) -> gr.Blocks:
    if max_input_chars is not None:
        engine.limits.max_input_chars = max_input_chars
    max_input_chars = engine.limits.max_input_chars

    def checked(message: str) -> str | None:
        text = (message if isinstance(message, str) else "").strip()
        if not text:
            gr.Warning("请输入问题后再发送。")
            return None
        if len(text) > max_input_chars:   # measured before anything else touches it
            raise gr.Error(f"问题太长：{len(text)} 字，上限 {max_input_chars} 字，请精简后再发送。")
        return text

    def within_limits(system, history, text, use_knowledge, sampling):
        """Every field capped (engine.Limits) before the model sees the request: one request cannot starve the demo."""
        try:
            system = system if isinstance(system, str) else ""
            prompt, hits = engine.build_prompt(system, history, text, use_knowledge)
            return prompt, hits, engine.check_sampling(sampling)
        except PromptRejected as err:
            raise gr.Error(str(err)) from None

    def chat(message, chatbot, system, temperature, top_p, repetition_penalty, max_new_tokens, use_knowledge,
             request: gr.Request):
        history = as_history(chatbot)
        text = checked(message)
        if text is None:
            yield chatbot, message, gr.skip()
            return
        sampling = dict(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty,
                        max_new_tokens=max_new_tokens)
        prompt, hits, sampling = within_limits(system, history, text, use_knowledge, sampling)
        history.append({"role": "user", "content": text})
        used = describe_hits(hits, use_knowledge)
        yield history + [{"role": "assistant", "content": ""}], "", used
        for reply in engine.stream(prompt, sampling, session=request.session_hash):
            yield history + [{"role": "assistant", "content": reply}], "", used

    def compare(message, system, temperature, top_p, repetition_penalty, max_new_tokens, use_knowledge,
                request: gr.Request):
        text = checked(message)
        if text is None:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        if not engine.can_compare:
            raise gr.Error("这个模型是合并导出的完整模型，没有可以关闭的适配器，无法对比基础模型。")
        sampling = dict(temperature=temperature, top_p=top_p, repetition_penalty=repetition_penalty,
                        max_new_tokens=max_new_tokens)
        prompt, hits, sampling = within_limits(system, [], text, use_knowledge, sampling)
        used = describe_hits(hits, use_knowledge)
        base = ""
        for base in engine.stream(prompt, sampling, session=request.session_hash, base=True):
            yield base, "", used
        for tuned in engine.stream(prompt, sampling, session=request.session_hash):
            yield base, tuned, used

    def stop(request: gr.Request):
        engine.stop(request.session_hash)

    has_kb = engine.knowledge is not None
    with gr.Blocks(title="DoctorKit demo", analytics_enabled=False) as demo:
        gr.Markdown(f"## DoctorKit 医疗对话演示 {('· ' + run_name) if run_name else ''}")
        gr.Markdown(NOTICE, elem_id="notice")
        with gr.Tabs():
            with gr.Tab("对话 Chat", id="chat"):
                chatbot = gr.Chatbot(label="对话", height=420, elem_id="chatbot", feedback_options=None,
                                     buttons=["copy", "copy_all"])   # no "share": it posts to the Hugging Face hub
                box = gr.Textbox(label="您的问题", placeholder=f"描述症状或提问（最多 {max_input_chars} 字），回车发送",
                                 elem_id="message", lines=1, max_lines=6)
                with gr.Row():
                    send = gr.Button("发送 Send", variant="primary", elem_id="send")
                    stop_chat = gr.Button("停止 Stop", elem_id="stop")
                    clear = gr.Button("清空 Clear", elem_id="clear")
                used_chat = gr.Markdown(elem_id="knowledge-used")
            with gr.Tab("对比 Compare", id="compare"):
                gr.Markdown("同一个问题，左边是未微调的基础模型，右边是微调后的模型（单轮）。")
                question = gr.Textbox(label="问题", elem_id="compare-message", lines=1)
                with gr.Row():
                    run_compare = gr.Button("对比 Compare", variant="primary", elem_id="compare-send")
                    stop_compare = gr.Button("停止 Stop", elem_id="compare-stop")
                with gr.Row():
                    base_out = gr.Textbox(label="基础模型 Base", lines=8, elem_id="base-answer", interactive=False)
                    tuned_out = gr.Textbox(label="微调模型 Tuned", lines=8, elem_id="tuned-answer", interactive=False)
                used_compare = gr.Markdown(elem_id="compare-knowledge-used")
        with gr.Accordion("设置 Settings", open=False):
            system = gr.Textbox(label="系统提示 System prompt", value=_default_system(engine), lines=2,
                                max_length=engine.limits.max_system_chars)
            with gr.Row():
                temperature = gr.Slider(0.0, 2.0, value=sampling.TEMPERATURE, step=0.05, label="temperature (0 = greedy)")
                top_p = gr.Slider(0.05, 1.0, value=sampling.TOP_P, step=0.05, label="top_p")
                repetition_penalty = gr.Slider(1.0, 2.0, value=sampling.REPETITION_PENALTY, step=0.05,
                                               label="repetition_penalty")
                max_new_tokens = gr.Slider(1, engine.limits.max_new_tokens, value=max_new_tokens, step=1,
                                           label="max_new_tokens")
            use_knowledge = gr.Checkbox(value=has_kb, interactive=has_kb, elem_id="use-knowledge",
                                        label="使用知识库 Knowledge" + ("" if has_kb else "（启动时未提供 --knowledge）"))

        controls = [system, temperature, top_p, repetition_penalty, max_new_tokens, use_knowledge]
        # One public API endpoint per job ("chat", "compare"); the duplicate triggers and buttons stay private.
        chat_events = [box.submit(chat, [box, chatbot, *controls], [chatbot, box, used_chat], api_name="chat"),
                       send.click(chat, [box, chatbot, *controls], [chatbot, box, used_chat], api_visibility="private")]
        stop_chat.click(stop, None, None, cancels=chat_events, queue=False, api_visibility="private")
        clear.click(lambda: ([], "", ""), None, [chatbot, box, used_chat], queue=False, api_visibility="private")
        compare_io = ([question, *controls], [base_out, tuned_out, used_compare])
        compare_events = [run_compare.click(compare, *compare_io, api_name="compare"),
                          question.submit(compare, *compare_io, api_visibility="private")]
        stop_compare.click(stop, None, None, cancels=compare_events, queue=False, api_visibility="private")
    return demo


def _default_system(engine: Engine) -> str:
    recipe = engine.run.recipe
    return (recipe.data.system_prompt if recipe is not None else None) or ""
