"""The mini service page of a super app (seed 004): its content and its release rules. Pure."""
