"""Layer 2, graphs: periodic neighbour graphs, line graphs and packed mini-batches. Imports core and io."""
