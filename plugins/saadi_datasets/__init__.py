"""saadi first-party plugin: datasets in their published, native layouts — LapGyn4,
Endoscapes2023, AutoLaparo (task 3), CholecSeg8k and generic COCO annotations — loaded with their
own class names and official splits, resized to the profile's size and cached
(:mod:`saadi_core.data.cache`). ``plugin.py`` registers them lazily; ``docs/datasets.md`` cites
the public descriptions of each layout."""
