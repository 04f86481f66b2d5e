"""Write `postcodes.csv`: the postcode table of Waymark's fictional ICS ("Wayford and Marsh").

THE POSTCODES ARE SYNTHETIC. They have the real UK format (outward code, space, inward code)
but use the area letters "WY", which Royal Mail does not issue, so none is anyone's address.
Their coordinates are plausible points in a 50 km wide area of northern England, generated
deterministically: run `python -m services.directory.data.generate_postcodes` and the same
file comes out. Waymark does no online geocoding; postcodes resolve through this table, which
the directory's migrations load.
"""

from __future__ import annotations

import csv
import math
import random
from pathlib import Path

CSV_PATH = Path(__file__).with_name("postcodes.csv")

#: the area's centre (a fictional town centre) and its districts: (district, place, km east,
#: km north of the centre)
CENTRE = (53.700000, -1.950000)
DISTRICTS = [
    (1, "Wayford Central", 0.0, 0.0),
    (2, "Wayford North", 0.5, 4.0),
    (3, "Wayford East", 4.5, 0.5),
    (4, "Wayford South", -0.5, -4.5),
    (5, "Wayford West", -5.0, 0.0),
    (6, "Marsh End", 12.0, 9.0),
    (7, "Marsh Bridge", 15.0, 3.0),
    (8, "Hollins Moor", -14.0, 8.0),
    (9, "Calder Row", -10.0, -11.0),
    (10, "Ashby Fold", 9.0, -14.0),
    (11, "Kettle Green", 22.0, -6.0),
    (12, "Upper Tarn", -22.0, -3.0),
]
SECTORS = 4
UNITS_PER_SECTOR = 6
UNIT_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters the inward code may use


def km_to_degrees(east_km: float, north_km: float) -> tuple[float, float]:
    lat0 = CENTRE[0]
    dlat = north_km / 111.32
    dlon = east_km / (111.32 * math.cos(math.radians(lat0)))
    return CENTRE[0] + dlat, CENTRE[1] + dlon


def rows() -> list[tuple[str, float, float, str]]:
    rng = random.Random(20260401)
    out = []
    for district, place, east, north in DISTRICTS:
        for sector in range(SECTORS):
            # sectors sit around the district centre, units within ~600 m of their sector
            s_east = east + rng.uniform(-1.5, 1.5)
            s_north = north + rng.uniform(-1.5, 1.5)
            used: set[str] = set()
            while len(used) < UNITS_PER_SECTOR:
                unit = rng.choice(UNIT_LETTERS) + rng.choice(UNIT_LETTERS)
                if unit in used:
                    continue
                used.add(unit)
                lat, lon = km_to_degrees(
                    s_east + rng.uniform(-0.6, 0.6), s_north + rng.uniform(-0.6, 0.6)
                )
                out.append((f"WY{district} {sector}{unit}", round(lat, 6), round(lon, 6), place))
    return sorted(out)


def write(path: Path = CSV_PATH) -> int:
    data = rows()
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["postcode", "latitude", "longitude", "place"])
        for pc, lat, lon, place in data:
            w.writerow([pc, f"{lat:.6f}", f"{lon:.6f}", place])
    return len(data)


def read(path: Path = CSV_PATH) -> list[tuple[str, float, float, str]]:
    with path.open(newline="") as f:
        return [
            (r["postcode"], float(r["latitude"]), float(r["longitude"]), r["place"])
            for r in csv.DictReader(f)
        ]


if __name__ == "__main__":
    print(f"wrote {write()} synthetic postcodes to {CSV_PATH}")
