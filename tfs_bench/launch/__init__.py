"""The launch stage: plan servers started (embedded, binary, docker) or found (external) and made ready."""
