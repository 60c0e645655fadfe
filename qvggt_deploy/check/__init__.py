"""``qvggt check``: accuracy of backends against each other (Polygraphy comparator) and task metrics."""
