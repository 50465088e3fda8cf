module github.com/dpsbatch/dpsbatch

go 1.26.8
