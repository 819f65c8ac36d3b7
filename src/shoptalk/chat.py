"""A conversation with the tuned assistant (or the base model), for `ask` and `chat`."""

from __future__ import annotations

from dataclasses import dataclass, field

from shoptalk.modeling.chat_format import with_system
from shoptalk.modeling.generate import Assistant, answer, load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project
from shoptalk.records import Message


@dataclass
class Session:
    assistant: Assistant
    system_prompt: str
    label: str
    history: list[Message] = field(default_factory=list)

    @classmethod
    def open(cls, project: Project, base: bool = False) -> Session:
        base_path = resolve_base_model(project.config.base_model, project.root)
        run = None if base else project.promoted_run()
        assistant = load_assistant(base_path, run, project.config.train.device)
        label = f"base model {project.config.base_model}" if base else f"tuned model {run.run_id}"
        return cls(assistant, project.config.system_prompt, label)

    def reply(self, text: str, max_new_tokens: int = 256, keep: bool = False) -> str:
        messages = [*self.history, Message(role="user", content=text)]
        reply = answer(
            self.assistant, [with_system(messages, self.system_prompt)], max_new_tokens, 1
        )[0]
        if keep:
            self.history = [*messages, Message(role="assistant", content=reply)]
        return reply
