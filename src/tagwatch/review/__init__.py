"""The review loop: the queue the stream's review requests land in, reviewer leases, the web app, and review
outcomes (events + ledger history) that become the next training labels. See docs/review.md."""
