"""A conversation with the tuned assistant (or the base model), for `ask` and `chat`.

With a retrieval index (or `rag=True`), questions are answered from the
documents: `Session.grounded` retrieves, reads the selected sentences,
verifies the answer and returns it with its citations (`rag.answer`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shoptalk.modeling.chat_format import with_system
from shoptalk.modeling.embed import Embedder, load_embedder
from shoptalk.modeling.generate import Assistant, answer, load_assistant
from shoptalk.modeling.load import resolve_base_model
from shoptalk.project import Project
from shoptalk.rag.verify import in_own_words
from shoptalk.rag.voice import follow_style
from shoptalk.records import Message

if TYPE_CHECKING:
    from shoptalk.rag.answer import RagAnswer
    from shoptalk.rag.retrieve import RagIndex


@dataclass
class Session:
    assistant: Assistant
    system_prompt: str
    label: str
    history: list[Message] = field(default_factory=list)
    index: RagIndex | None = None
    style: dict = field(default_factory=dict)  # the style rules drafts are held to (rag.voice)
    organization: str = ""  # the config's `name`: how the assistant introduces itself (rag.persona)
    embedder: Embedder | None = None  # tells a draft's situation (rag.voice.situation_for)
    refusal: str = ""  # the organization's "not in the documents" (data.own_refusal_answer)

    @classmethod
    def open(cls, project: Project, base: bool = False, rag: bool | None = None) -> Session:
        """`rag`: answer from the documents; None = whenever the project has an index."""
        from shoptalk.rag.index import index_folder
        from shoptalk.rag.store import index_exists

        base_path = resolve_base_model(project.config.base_model, project.root)
        run = None if base else project.promoted_run()
        index = None
        if rag or (rag is None and index_exists(index_folder(project))):
            from shoptalk.rag.retrieve import open_index

            index = open_index(project)
        assistant = load_assistant(base_path, run, project.config.train.device)
        label = f"base model {project.config.base_model}" if base else f"tuned model {run.run_id}"
        if index is not None:
            label += " with retrieval"
        return cls(
            assistant,
            project.system_prompt,
            label,
            index=index,
            style=project.style,
            organization=project.organization,
            refusal=project.config.data.own_refusal_answer,
            embedder=index.embedder
            if index is not None
            else load_embedder(project.config.rag.embedding_model, project.root),
        )

    def grounded(self, text: str, max_new_tokens: int = 256) -> RagAnswer:
        """`text` answered from the documents (every group: the owner at the terminal)."""
        from shoptalk.rag.answer import answer_with_citations

        result = answer_with_citations(
            self.assistant,
            self.index,
            text,
            None,
            self.system_prompt,
            max_new_tokens,
            organization=self.organization,
        )
        # Styled first: a draft that is "not in the documents" is left unframed (it is
        # for the adviser), and then said in the organization's words.
        styled = follow_style(text, result.message, self.style, self.embedder)
        result.message = in_own_words(styled, text, self.refusal)
        return result

    def reply(self, text: str, max_new_tokens: int = 256, keep: bool = False) -> str:
        messages = [*self.history, Message(role="user", content=text)]
        reply = answer(
            self.assistant, [with_system(messages, self.system_prompt)], max_new_tokens, 1
        )[0]
        reply = follow_style(text, reply, self.style, self.embedder)
        if keep:
            self.history = [*messages, Message(role="assistant", content=reply)]
        return reply
