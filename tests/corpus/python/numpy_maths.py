import numpy as np

def main(matrix, rhs):
    a = np.array(matrix, dtype=float)
    x = np.linalg.solve(a, np.array(rhs, dtype=float))
    data = np.arange(1, 11)
    return {
        "solution": np.round(x, 6).tolist(),
        "det": round(float(np.linalg.det(a)), 6),
        "percentile": float(np.percentile(data, 90)),
        "cumsum": np.cumsum(data[:4]).tolist(),
        "where": np.where(data % 3 == 0)[0].tolist(),
        "reshape": data.reshape(2, 5).sum(axis=0).tolist(),
        "seeded_equal": np.random.default_rng(1).integers(0, 100, 5).tolist() == np.random.default_rng(1).integers(0, 100, 5).tolist(),
    }
