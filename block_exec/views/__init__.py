"""The JSON views of the state a person reads: what `state`, `diff` and `prove` print.

`entries` names and decodes one state entry (one function per kind of entry); `state` is
the books-and-balances view; `diff` lists the entries (and book levels) two states
disagree on.
"""
