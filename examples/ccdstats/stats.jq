# stats.jq: the statistics of one CCD's pixel values (a JSON array of
# numbers), as one JSON object on one line (jq -c); the mean to two
# decimals.
{n: length, mean: ((add / length) * 100 | round / 100), min: min, max: max}
