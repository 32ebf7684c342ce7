"""Outside architectures the benchmarks load real published weights into (import path ``benchmarks.models.X:fn``)."""
