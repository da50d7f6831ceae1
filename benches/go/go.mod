module trioxide-bench-go

go 1.18
