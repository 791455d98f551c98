"""The offline responder: answers from the knowledge passages alone, with no LLM.

It quotes the sentences of the retrieved passages that best cover the question, with
citation markers, streamed word by word like a model's answer. When nothing relevant was
retrieved it says so plainly and, when the bot allows it, offers a human.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import anyio.lowlevel

from realtime.agent.provider import Cite, Handoff, ModelRequest, ProviderEvent, TextDelta, Usage
from realtime.knowledge import compose_answer

NOT_FOUND = "I'm sorry, I couldn't find anything about that in my sources."
OFFER_HUMAN = " If you like, I can connect you with a person from our team."
HANDING_OFF = " I'm passing your question to a person from our team."

_TOKEN_RE = re.compile(r"\s*\S+")


def split_tokens(text: str) -> list[str]:
    """Word-sized deltas with their leading whitespace, so they concatenate back to ``text``."""
    tokens = _TOKEN_RE.findall(text)
    consumed = sum(len(t) for t in tokens)
    if consumed < len(text):  # trailing whitespace
        if tokens:
            tokens[-1] += text[consumed:]
        else:
            tokens = [text]
    return tokens


class OfflineProvider:
    name = "offline"

    async def close(self) -> None:
        return None

    async def stream(self, request: ModelRequest) -> AsyncIterator[ProviderEvent]:
        answer = compose_answer(request.question, request.passages, threshold=request.threshold)
        if answer is None:
            if request.auto_handoff:
                text = NOT_FOUND + HANDING_OFF
                yield Handoff()
            else:
                text = NOT_FOUND + (OFFER_HUMAN if request.offer_human else "")
        else:
            text = answer.text
            yield Cite(answer.cited)
        tokens = split_tokens(text)
        for token in tokens:
            yield TextDelta(token)
            await anyio.lowlevel.checkpoint()  # let writers send it: streamed, not one blob
        yield Usage(input_tokens=len(request.question.split()), output_tokens=len(tokens))
