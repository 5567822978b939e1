# Terraform and provider versions. The google provider is pinned to one major version: a major
# release renames and removes arguments, so moving to the next one is a deliberate change here.
terraform {
  required_version = ">= 1.5.0, < 2.0.0"

  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 7.0.0, < 8.0.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
