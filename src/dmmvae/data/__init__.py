"""Data layer: sources -> raw MuData -> preprocessed MuData (the contract) -> scenarios."""
