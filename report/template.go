package report

import (
	_ "embed"
	"html/template"
	"strconv"
)

//go:embed page.html
var pageHTML string

// pageTemplate is the report page. html/template escapes every value for
// where it lands (text, attribute, SVG title), so a visit's error shows as
// the text it is.
var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"px":            func(f float64) string { return strconv.FormatFloat(f, 'f', 1, 64) },
	"add":           func(a, b float64) float64 { return a + b },
	"sub":           func(a, b float64) float64 { return a - b },
	"plotLeft":      func() float64 { return chartLeft },
	"plotRight":     func() float64 { return chartLeft + chartWidth },
	"markHeight":    func() float64 { return markHeight },
	"maxFailures":   func() int { return maxFailures },
	"maxStageCalls": func() int { return maxStageCalls },
}).Parse(pageHTML))
