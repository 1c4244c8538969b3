"""Model names -> weights on disk: embedded packages, the Hugging Face and ModelScope caches, directories."""
