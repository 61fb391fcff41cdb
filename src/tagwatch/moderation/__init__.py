"""The moderation stream: post.created events -> fetch + validate image -> hash banks -> model -> policy ->
decision events + ledger, at least once, nothing lost. See consumer.py for the loop and its guarantees."""
