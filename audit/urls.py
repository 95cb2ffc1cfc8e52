from django.urls import path

from audit import views

urlpatterns = [
    path("", views.dashboard_home, name="home"),
]
