"""`advisor analyze`: the engine's command line (`main`), its flags from `AnalysisConfig` (`options`)
and the curve table (`table`)."""
