"""The one ask -> read -> re-ask loop: how many asks, what each re-ask sends, what the asks cost."""

import pytest

from imageedit_r1.agents.asking import Ask, ask, ask_log_of
from imageedit_r1.backends import ChatMessage, ChatResponse
from imageedit_r1.retry import RetriesExhausted


class Unreadable(ValueError):
    pass


def read_number(text: str) -> int:
    if not text.strip().isdigit():
        raise Unreadable(f"not a number: {text!r}")
    return int(text)


class Scripted:
    """Answers from a list (text, or an exception to raise), counting 10 prompt + 2 completion tokens a reply."""

    model = "scripted"

    def __init__(self, *answers):
        self.answers, self.sent = list(answers), []

    def chat(self, messages, *, json_schema=None, schema_name="response", temperature=0.0, max_tokens=1024, seed=None):
        self.sent.append((messages, json_schema))
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return ChatResponse(text=answer, model=self.model, prompt_tokens=10, completion_tokens=2)


FIRST = Ask([ChatMessage("user", "a number, please")], read_number)


def test_an_unreadable_reply_is_asked_again_with_what_the_reask_builds_and_every_ask_is_counted():
    def reask(previous, reply, error):
        return Ask([*previous.messages, ChatMessage("assistant", reply.text), ChatMessage("user", str(error))],
                   read_number, {"type": "integer"})

    backend = Scripted("seven", "7")
    answer = ask(backend, FIRST, reasks=1, unreadable=Unreadable, reask=reask)
    assert answer.value == 7 and answer.reasked and answer.log.asks == 2
    assert (answer.log.prompt_tokens, answer.log.completion_tokens) == (20, 4)
    assert answer.log.errors == ["not a number: 'seven'"] and answer.log.raw_outputs == ["seven", "7"]
    messages, schema = backend.sent[1]
    assert [m.text() for m in messages] == ["a number, please", "seven", "not a number: 'seven'"]
    assert schema == {"type": "integer"}


def test_the_last_unreadable_error_carries_the_usage_of_every_ask():
    backend = Scripted("one", "two", "three")
    with pytest.raises(Unreadable, match="three") as info:
        ask(backend, FIRST, reasks=2, unreadable=Unreadable)
    log = ask_log_of(info.value)
    assert log.asks == 3 and log.prompt_tokens == 30 and len(log.errors) == 3
    assert all(messages == FIRST.messages for messages, _ in backend.sent)  # no reask: the same messages


def test_other_errors_stop_at_once_and_carry_the_asks_so_far():
    backend = Scripted("nope", RetriesExhausted(4, RuntimeError("HTTP 503")))
    with pytest.raises(RetriesExhausted) as info:
        ask(backend, FIRST, reasks=3, unreadable=Unreadable)
    log = ask_log_of(info.value)
    assert log.asks == 2 and len(log.replies) == 1 and log.prompt_tokens == 10
    assert ask(Scripted("5"), FIRST, reasks=0, unreadable=Unreadable).log.asks == 1
    with pytest.raises(Unreadable):
        ask(Scripted("five", "5"), FIRST, reasks=0, unreadable=Unreadable)


class Batching:
    """Answers each conversation by its text: "n:<answers separated by |>" gives them in turn per ask;
    "boom" raises. Records the size of every batch it is sent."""

    model = "batching"

    def __init__(self):
        self.batches, self.schemas = [], []

    def chat_batch(self, conversations, *, json_schema=None, **settings):
        self.batches.append(len(conversations))
        self.schemas.append(json_schema)
        return [self._answer(messages) for messages in conversations]

    @staticmethod
    def _answer(messages):
        question = messages[0].text()
        if question == "boom":
            return RetriesExhausted(4, RuntimeError("HTTP 503"))
        answers = question.split(":", 1)[1].split("|")
        asked = sum(1 for message in messages if message.role == "user")
        return ChatResponse(text=answers[min(asked, len(answers)) - 1], model="batching", prompt_tokens=10,
                            completion_tokens=2)


def test_a_batch_is_asked_round_by_round_and_each_question_ends_on_its_own():
    from imageedit_r1.agents.asking import ask_batch

    def reask(previous, reply, error):
        return Ask([*previous.messages, ChatMessage("assistant", reply.text), ChatMessage("user", str(error))],
                   read_number, {"type": "integer"})

    questions = ["n:1", "n:one|2", "n:one|two", "boom", "n:three|3"]
    backend = Batching()
    results = ask_batch(backend, [Ask([ChatMessage("user", q)], read_number) for q in questions], reasks=1,
                        unreadable=Unreadable, reask=reask)
    # Round 1: all five; round 2: the three unreadable ones, together, under the re-ask's schema.
    assert backend.batches == [5, 3] and backend.schemas == [None, {"type": "integer"}]
    assert results[0].value == 1 and not results[0].reasked
    assert results[1].value == 2 and results[1].log.asks == 2 and results[4].value == 3
    assert isinstance(results[2], Unreadable) and ask_log_of(results[2]).asks == 2
    assert ask_log_of(results[2]).errors == ["not a number: 'one'", "not a number: 'two'"]
    assert isinstance(results[3], RetriesExhausted) and ask_log_of(results[3]).asks == 1
    assert ask_log_of(results[3]) is not ask_log_of(results[2])


def test_a_backend_without_chat_batch_is_asked_one_conversation_at_a_time_and_a_failed_batch_fails_each_item():
    from imageedit_r1.backends.batching import chat_batch

    backend = Scripted("1", RuntimeError("down"), "3")
    replies = chat_batch(backend, [FIRST.messages] * 3)
    assert [getattr(reply, "text", None) for reply in replies] == ["1", None, "3"]
    assert isinstance(replies[1], RuntimeError)

    class Broken:
        def chat_batch(self, conversations, **settings):
            raise RuntimeError("the whole batch failed")

    first, second = chat_batch(Broken(), [FIRST.messages] * 2)
    assert str(first) == str(second) == "the whole batch failed" and first is not second  # each its own error
