module ingot

go 1.19
