# stats.jq: the statistics of one CCD's pixel values (a JSON array of
# numbers), as one JSON object on one line (jq -c).
{n: length, mean: (add / length), min: min, max: max}
