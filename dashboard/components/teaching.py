"""Short teaching notes that every page shows when the sidebar's "Teaching notes" switch is on."""

from __future__ import annotations

import streamlit as st

NOTES: dict[str, tuple[str, str]] = {
    "graph": (
        "The crystal graph",
        (
            "Every atom of the unit cell is a **node**. Each atom gets an **edge** to each of its "
            "nearest neighbours within a cutoff radius (8 Å by default, keeping at most 12 "
            "neighbours), counting neighbours in the **periodic images** of the cell. Atoms *i* and "
            "*j* can therefore be joined by several edges through different images, and a cell with "
            "one atom has edges to itself. Node features describe the element (a 92-number vector: "
            "group, period, electronegativity, radius, valence electrons, …); edge features describe "
            "the distance. Guidance for the cutoff: 4 Å covers the first shell (covalent crystals), "
            "6 Å suits metals, 8 Å is the general default for ionic crystals."
        ),
    ),
    "gaussian": (
        "Gaussian distance expansion",
        (
            "A single number (the distance *d*) is a poor input for a neural network, so it is "
            'spread over many Gaussian "bins": u_k(d) = exp(−(d − μ_k)² / σ²), with centres μ_k '
            "from 0 to 8 Å every 0.2 Å (41 features) and σ = 0.2 Å. A short bond lights up the "
            "first bins, a long one the last bins — like a soft one-hot code of the distance."
        ),
    ),
    "convolution": (
        "The gated graph convolution (Xie & Grossman, eq. 1)",
        (
            "Each convolution updates every atom vector from its neighbours:\n\n"
            "v_i ← v_i + Σ_(j,k) σ(z W_f + b_f) ⊙ g(z W_s + b_s),  with z = v_i ⊕ v_j ⊕ u_(i,j)k.\n\n"
            "z joins the atom, its neighbour and the edge's distance features. The **sigmoid gate** "
            "σ acts as a soft attention that learns to down-weight far neighbours; g (softplus) "
            "makes the message; ⊙ multiplies them element by element; the sum runs over every edge. "
            "K convolutions let information travel K bonds."
        ),
    ),
    "pooling": (
        "Pooling",
        (
            "After the convolutions the atom vectors are **averaged** into one crystal vector v_c. "
            "The mean does not depend on the order of atoms in the file, nor on the cell size (a "
            "supercell gives the same vector). A small dense network maps v_c to the property."
        ),
    ),
    "embeddings": (
        "Embeddings",
        (
            'The pooled crystal vector v_c (64 numbers by default) is what the model "sees" of a '
            "material. t-SNE and UMAP squeeze these vectors into 2-D while trying to keep "
            "neighbours neighbours. If the model has learnt something meaningful, materials with "
            "similar properties sit together: coloured by predicted thermal expansion, the test set "
            "runs in a smooth gradient from low to high. Distances between far-apart clusters in a "
            "t-SNE map mean little; local neighbourhoods mean a lot."
        ),
    ),
    "splits": (
        "Training, validation and test splits",
        (
            "The model learns on the **training** set, the **validation** set picks the best epoch "
            "and settings, and the **test** set is touched only once for the final score. Materials "
            "data hold many near-duplicates (polymorphs of one formula), so a random split flatters "
            "a model; splitting **by formula** (the default here) keeps every polymorph of a formula "
            "in one part."
        ),
    ),
    "metrics": (
        "Reading the metrics",
        (
            "MAE is the mean absolute error and RMSE the root-mean-square error, both in the "
            "property's unit (RMSE punishes large misses more). R is the Pearson correlation of "
            "prediction and truth; R² the fraction of the variance explained (1 is perfect, 0 is no "
            "better than always predicting the mean). In a parity plot a perfect model puts every "
            "point on the diagonal."
        ),
    ),
    "cte": (
        "Thermal expansion and fuel cells",
        (
            "A solid-oxide fuel cell is a stack of ceramic layers (cathode, electrolyte, anode, "
            "interconnect) cycled between room temperature and ~600–1000 °C. If two layers expand "
            "differently (a mismatch of their thermal expansion coefficients, CTE) they crack or "
            "delaminate. The AFLOW AGL data give the **volumetric** CTE at 300 K from a "
            "quasi-harmonic Debye model — about three times the linear CTE that dilatometry "
            "measures."
        ),
    ),
    "physics": (
        "The quasi-harmonic Debye model",
        (
            "The physics estimate redoes AFLOW's AGL recipe with a universal interatomic "
            "potential (CHGNet) instead of DFT: the energy of the cell at several volumes, "
            "E(V), gives the bulk modulus B0 and its pressure derivative B′; the bulk modulus "
            "gives a Debye temperature θ_D(V); at each temperature the cell takes the volume "
            "that minimises E(V) plus the Debye vibrational free energy, and α_V = (1/V) dV/dT. "
            "Softer, more anharmonic crystals (large B′, hence a large Grüneisen γ) expand more. "
            "It leaves out anharmonicity beyond the quasi-harmonic picture, anisotropy, magnetic "
            "and spin-state transitions (the large expansion of cobaltites) and chemical "
            "expansion from oxygen vacancies at high temperature, all of which a dilatometer "
            "sees on real SOFC materials."
        ),
    ),
    "fusion": (
        "Fusion of composition and structure",
        (
            "An attention-fusion model has two branches: one reads the **composition** (Magpie "
            "element statistics), the other the **crystal graph**. For each material it scores both "
            "and takes a softmax, giving weights w_comp + w_graph = 1, then predicts from the "
            "weighted sum. A mean of, say, 0.29 on composition and 0.71 on the graph says the model "
            "relies mostly on structure. Where the weights sit against the error shows which branch "
            "to trust for which materials."
        ),
    ),
}


def teaching_on() -> bool:
    return bool(st.session_state.get("teaching"))


def teach(*topics: str, force: bool = False) -> None:
    """Show the notes on these topics when teaching notes are on (or ``force``)."""
    if not (force or teaching_on()):
        return
    for topic in topics:
        title, text = NOTES[topic]
        st.info(f"**{title}.** {text}", icon=":material/school:")
