"""Layer 2, materials: structures built in code (SOFC examples, the candidate library, named fuel-cell materials, ordered supercells of disordered crystals). Imports core and io."""
