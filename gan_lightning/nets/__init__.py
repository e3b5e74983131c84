"""Plain ``nn.Module`` networks: generators, discriminators, classifiers and their building blocks."""
