module github.com/tally/tally/clients/go

go 1.22
