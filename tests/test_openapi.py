"""The OpenAPI document and Swagger UI describe every endpoint, offline."""
from __future__ import annotations


def test_openapi_documents_every_route(app, client):
    spec = client.get("/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    documented = set(spec["paths"])
    # Not JSON API endpoints: the page at /, its static files, Swagger UI and
    # Prometheus' text format.
    undocumented = ("static", "api-docs.", "docs_assets.", "ui.", "iris_metrics.")
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith(undocumented):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        path = path.replace("{path:", "{").replace("{int:", "{")
        assert path in documented, f"{rule.rule} is not in /openapi.json"


def test_predict_is_documented_with_its_schemas_and_errors(client):
    spec = client.get("/openapi.json").get_json()
    post = spec["paths"]["/predict"]["post"]
    assert post["summary"].startswith("Predict the class")
    assert "requestBody" in post
    for status in ("200", "400", "413", "415", "422", "503"):
        assert status in post["responses"], status
    schemas = spec["components"]["schemas"]
    assert {"features", "instances"} <= set(schemas["PredictRequest"]["properties"])
    assert "Error" in schemas and "code" in schemas["Error"]["properties"]


def test_swagger_ui_is_served_without_internet(client):
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/docs/assets/swagger-ui-bundle.js" in html
    assert "//cdn" not in html and "https://" not in html.split("<body")[0]
    with client.get("/docs/assets/swagger-ui-bundle.js") as asset:
        assert asset.status_code == 200
        assert asset.mimetype in ("text/javascript", "application/javascript")
